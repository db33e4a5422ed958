"""A new device in minutes: few-shot F from what the store already knows.

Profiling every op of a space on a new device takes from minutes to hours; timing a handful of
whole networks takes seconds. `profile_networks` times the networks worth timing (chosen with
the other devices' F, `pick_networks`), `fit_device_transfer` fits the new device's F from those
timings and every other device of the space in the store (`fit_transfer`), and
`import_networks` brings in devices known only by whole-network timings, which then count as
sources like profiled ones. Every timing goes into the store with its own origin (`few-shot`,
`imported`) and a rerun continues where the last one stopped.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from latkit.devices import DeviceConfig, device_name
from latkit.errors import LatkitError
from latkit.ops import OpSpec, from_key
from latkit.predictors.fit import (
    DATA_DIR,
    HELD_OUT_ORIGINS,
    env_of,
    op_frame,
    op_predictor,
    predictor_path,
    stored_networks,
)
from latkit.predictors.lut import imported_environment, imported_stats
from latkit.predictors.networks import NetworkLine, fit_networks, read_network_lines
from latkit.predictors.predictor import LatencyPredictor
from latkit.predictors.transfer import (
    MIN_TRANSFER_NETWORKS,
    Sample,
    Source,
    TransferReport,
    fit_transfer,
    pick_networks,
)
from latkit.profilers import Profiler
from latkit.profilers.session import time_network
from latkit.reporting import Reporter
from latkit.spaces import Network, SearchSpace, builtin_spaces
from latkit.store import MeasurementStore
from latkit.workflows.profile import check_options, open_profiler

#: network timings that never feed a transfer fit: `validate` judges F on its own, and a
#: search's are the networks it found (where F was already trusted), not a spread of the space
NOT_FOR_TRANSFER: tuple[str, ...] = (*HELD_OUT_ORIGINS, "search")
#: the origin of the networks `profile --networks` times
FEW_SHOT = "few-shot"
#: the origin of the networks `import-networks` stores
IMPORTED = "imported"
#: a device with whole-network timings only counts as a source from this many
MIN_SOURCE_NETWORKS = 3
#: a device with op rows counts as a source when they cover this share of the space's ops
MIN_OP_COVERAGE = 0.5

# --- the devices the store already knows ---------------------------------------------------------


def space_sources(
    store: MeasurementStore,
    space: SearchSpace,
    target: str,
    data_dir: Path = DATA_DIR,
    seed: int = 0,
) -> list[Source]:
    """Every device of `store` but `target` that knows `space`, with its F: op rows covering at
    least half the space's ops (profiled or imported: the op-table fit with network terms), or
    else at least `MIN_SOURCE_NETWORKS` whole-network timings of it (a networks-only fit)."""
    sources = []
    for name in store.devices():
        if name == target:
            continue
        source = _op_source(store, space, name, data_dir, seed)
        source = source or _network_source(store, space, name, seed)
        if source is not None:
            sources.append(source)
    return sources


def _op_source(
    store: MeasurementStore, space: SearchSpace, name: str, data_dir: Path, seed: int
) -> Source | None:
    """`name` as a source from its op rows (latest environment), or None when they cover less
    than `MIN_OP_COVERAGE` of the space's ops at their batch size."""
    rows = _covering_rows(store, space, name)
    if rows is None:
        return None
    saved = _saved_predictor(store, name, rows, data_dir, seed)
    return Source(name, saved or op_predictor(store, name, rows, seed), int(rows["batch"].iloc[-1]))


def _covering_rows(store: MeasurementStore, space: SearchSpace, name: str) -> pd.DataFrame | None:
    """`name`'s op rows (latest environment, no zero ops) when they cover `MIN_OP_COVERAGE` of
    the space's ops at their batch size: enough for an F of the space from them; else None."""
    try:
        rows = op_frame(store, name)
    except LatkitError:  # no op rows: maybe a source by its networks
        return None
    if rows.empty:  # (only zero ops)
        return None
    wanted = {op.key for op in space.distinct_ops(batch=int(rows["batch"].iloc[-1]))}
    return rows if len(wanted & set(rows["key"])) >= MIN_OP_COVERAGE * len(wanted) else None


def _saved_predictor(
    store: MeasurementStore, name: str, rows: pd.DataFrame, data_dir: Path, seed: int
) -> LatencyPredictor | None:
    """The predictor `latkit fit` saved for `name`, if it was fitted on exactly these op rows
    and the networks stored with them (same seed, environment and count, fitted after the last of
    them was timed); None when in doubt, so the caller refits."""
    path = predictor_path(name, data_dir)
    if not path.exists():
        return None
    try:
        saved = LatencyPredictor.load(path)
    except LatkitError:
        return None
    meta = saved.meta
    env_id = str(rows["env_id"].iloc[-1])
    fitted_on = (
        saved.device,
        saved.seed,
        meta.get("source"),
        meta.get("env_id"),
        meta.get("n_ops"),
    )
    if fitted_on != (name, seed, "ops", env_id, len(rows)):
        return None
    return saved if _fitted_after(meta, store, name, rows, env_id) else None


def _fitted_after(
    meta: dict[str, Any], store: MeasurementStore, name: str, rows: pd.DataFrame, env_id: str
) -> bool:
    """Whether the fit recorded in `meta` is later than every op row and every network of the
    environment that a fit reads (its time is kept to the second: a tie counts as not later)."""
    try:
        fitted = datetime.datetime.fromisoformat(str(meta["fitted_at"])).timestamp()
    except (KeyError, ValueError):
        return False
    networks = store.networks(name)
    if not networks.empty:
        networks = networks[networks["env_id"] == env_id]
        networks = networks[~networks["origin"].isin(list(HELD_OUT_ORIGINS))]
    times = [*rows["measured_at"], *networks["measured_at"]]
    return fitted > max(times)


def _network_source(
    store: MeasurementStore, space: SearchSpace, name: str, seed: int
) -> Source | None:
    """`name` as a source from its whole-network timings of the space, or None with too few."""
    samples, env = device_samples(store, name, space)
    if len(samples) < MIN_SOURCE_NETWORKS:
        return None
    predictor, _ = fit_networks(samples, test_fraction=0, seed=seed, device=name)
    return Source(name, predictor, env["batch"])


def device_samples(
    store: MeasurementStore, device: str, space: SearchSpace | None = None
) -> tuple[list[Sample], dict[str, Any]]:
    """(the device's whole-network timings a transfer may fit on, their environment's meta):
    every origin but `NOT_FOR_TRANSFER`, only networks of `space` when given, of the latest
    environment that has any."""
    frame = store.networks(device)
    if frame.empty:
        return [], {}
    frame = frame[~frame["origin"].isin(list(NOT_FOR_TRANSFER))]
    keys = None if space is None else {op.key for op in space.distinct_ops()}
    for env_id in frame.sort_values("measured_at")["env_id"].unique()[::-1]:
        samples = stored_networks(store, device, env_id, NOT_FOR_TRANSFER)
        samples = [s for s in samples if keys is None or in_space(s[0], keys)]
        if samples:
            return samples, env_of(frame[frame["env_id"] == env_id])
    return [], {}


def _ops(ops_json: str, batch: int) -> tuple[OpSpec, ...]:
    return tuple(from_key(k, "proxylessnas", batch=batch) for k in json.loads(ops_json))


def in_space(ops: Sequence[OpSpec], keys: set[str]) -> bool:
    """Whether every op of a network is one of the space's (`keys`: its distinct ops' keys;
    zero ops cost nothing and belong to any space that offers them)."""
    return all(op.type == "zero" or op.key in keys for op in ops)


def infer_space(samples: Sequence[Sample]) -> SearchSpace:
    """The one built-in space whose ops hold every op of every network; an error when none or
    several do (then `--space` says which)."""
    matches = [
        space
        for space in builtin_spaces().values()
        if all(in_space(ops, {op.key for op in space.distinct_ops()}) for ops, _ in samples)
    ]
    if len(matches) != 1:
        found = ", ".join(s.name for s in matches) or "none"
        raise LatkitError(
            f"cannot tell which space these networks are of (built-in spaces holding all their "
            f"ops: {found}); give it with --space"
        )
    return matches[0]


# --- fit ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferFit:
    """What `fit_device_transfer` did: the saved F, its report, the space and the sources."""

    predictor: LatencyPredictor
    report: TransferReport
    space: str
    sources: tuple[Source, ...]
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.predictor.device,
            "space": self.space,
            "path": str(self.path),
            "sources": {s.name: {"fitted_on": s.fitted_on, "batch": s.batch} for s in self.sources},
            **self.report.to_json(),
        }


def fit_device_transfer(
    store: MeasurementStore,
    device: str,
    *,
    space: SearchSpace | None = None,
    data_dir: Path = DATA_DIR,
    seed: int = 0,
) -> TransferFit:
    """Fit and save `device`'s F from its few whole-network timings (`device_samples`) and the
    other devices of the space (`space_sources`; the space is inferred from the networks unless
    given). Too few networks, no other device, or op rows of the device that cover the space
    (F is fitted from those) is an error and nothing is written. Fewer op rows (those that
    `time-network` or `profile --onnx` measured) do not count."""
    samples, env = device_samples(store, device, space)
    where = f" of {space.name}" if space is not None else ""
    if len(samples) < MIN_TRANSFER_NETWORKS:
        raise LatkitError(
            f"{device!r} has {len(samples)} timed network(s){where} in {store.path}; transfer "
            f"needs at least {MIN_TRANSFER_NETWORKS}: time them with `latkit profile --device "
            "FILE --space SPACE --networks 10`, or import them with `latkit import-networks`"
        )
    space = space or infer_space(samples)
    if _covering_rows(store, space, device) is not None:
        raise LatkitError(
            f"{device!r} has op rows of {space.name} in {store.path}: fit it from them with "
            f"`latkit fit --device {device}`; --transfer is for a device timed on whole networks"
        )
    sources = space_sources(store, space, device, data_dir, seed)
    predictor, report = fit_transfer(samples, sources, space=space, seed=seed, device=device)
    predictor.stamp(**env, space=space.name)
    path = predictor.save(predictor_path(device, data_dir))
    return TransferFit(predictor, report, space.name, tuple(sources), path)


# --- profile a few networks -------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkTimed:
    """One few-shot network: its statistics, and whether it was timed now or already stored."""

    network: str
    median_ms: float
    cv: float
    timed_now: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FewShotProfile:
    """What `profile_networks` did on one device."""

    device: str
    space: str
    label: str
    sources: tuple[str, ...]
    networks: tuple[NetworkTimed, ...]
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "timed": sum(n.timed_now for n in self.networks)}


def profile_networks(
    config: DeviceConfig,
    space: SearchSpace,
    store: MeasurementStore,
    n: int,
    *,
    fresh: bool = False,
    keep_files: bool = False,
    raw_dir: Path = Path("data/raw"),
    reporter: Reporter | None = None,
) -> FewShotProfile:
    """Time `n` whole networks of `space` on the device instead of every op: those
    `pick_networks` finds most informative given the other devices of the space in the store,
    each with the estimator every timing uses, stored with origin `few-shot`. The networks
    already timed so for this device and environment come first and are not timed again
    (unless `fresh`), so a rerun continues and a larger `n` adds to them; networks `validate`
    or a search timed stay theirs and are never picked."""
    check_options(config, keep_files)
    started = time.perf_counter()
    profiler = open_profiler(config, keep_files, raw_dir, reporter)
    try:
        first, avoid = _stored_picks(store, profiler, space)
        sources = space_sources(store, space, config.name)
        networks = pick_networks(
            space, sources, n, batch=config.batch_size, first=first, avoid=avoid
        )
        timed = _time_networks(profiler, store, networks, fresh)
    finally:
        profiler.close()
    names = tuple(s.name for s in sources)
    wall = time.perf_counter() - started
    return FewShotProfile(config.name, space.name, profiler.label, names, tuple(timed), wall)


def _stored_picks(
    store: MeasurementStore, profiler: Profiler, space: SearchSpace
) -> tuple[list[Network], set[tuple[OpSpec, ...]]]:
    """(the space's networks this device and environment already timed as few-shot picks,
    oldest first; the ops of those it timed for `NOT_FOR_TRANSFER` origins)."""
    frame = store.networks(profiler.device.name)
    if frame.empty:
        return [], set()
    frame = frame[frame["env_id"] == profiler.environment().env_id].sort_values("measured_at")
    keys = {op.key for op in space.distinct_ops()}
    first, avoid = [], set()
    for row in frame.itertuples():
        ops = _ops(row.ops_json, int(row.batch))
        if row.origin == FEW_SHOT and in_space(ops, keys):
            first.append(Network(ops, str(row.name)))
        elif row.origin in NOT_FOR_TRANSFER:
            avoid.add(ops)
    return first, avoid


def _time_networks(
    profiler: Profiler, store: MeasurementStore, networks: Sequence[Network], fresh: bool
) -> list[NetworkTimed]:
    """Each network's timing: the stored one, or (`fresh`, or none stored) measured now and
    committed before the next."""
    reporter = profiler.options.reporter
    name, env_id = profiler.device.name, profiler.environment().env_id
    stored = [
        not fresh
        and store.network_stats(name, tuple(profiler.prepare(net.ops)), env_id) is not None
        for net in networks
    ]
    if any(stored):
        reporter.note(f"resuming: {sum(stored)} of {len(networks)} networks already stored")
    label = f" ({profiler.label})" if profiler.label else ""
    advance = reporter.task(
        f"timing {len(networks)} networks on {name}{label}", len(networks) - sum(stored)
    )
    out = []
    for network, kept in zip(networks, stored):
        stats = time_network(profiler, store, network, origin=FEW_SHOT, reuse=not fresh)
        out.append(NetworkTimed(network.name, stats.median_ms, stats.cv, not kept))
        if not kept:
            advance(1)
    return out


# --- import ---------------------------------------------------------------------------------------


def import_networks(
    store: MeasurementStore, path: str | Path, device: DeviceConfig | str
) -> tuple[int, int]:
    """Store the whole-network timings of a NETS.jsonl (the `latkit fit --networks` format:
    one `{"ops": [...], "latency_ms": x}` per line) under `device` (a name, or a device file's
    config), with origin `imported`; returns (networks new to the store, networks updated).
    Every line is read and checked before the device is registered or anything stored, so a
    bad file leaves the store as it was."""
    path = Path(path)
    batch = 1 if isinstance(device, str) else device.batch_size
    lines = read_network_lines(path, batch)
    name = device_name(device)
    _check_import(store, path, name, lines)
    store.register_device(device)
    env = imported_environment(batch, path.name, "networks")
    new = 0
    for line in lines:
        new += store.network_stats(name, line.ops, env.env_id) is None
        stats = imported_stats(line.latency_ms, math.nan, 0)
        store.add_network(name, line.ops, stats, env, name=line.name, origin=IMPORTED)
    return new, len(lines) - new


def _check_import(
    store: MeasurementStore, path: Path, name: str, lines: Sequence[NetworkLine]
) -> None:
    """Refuse what would store a network twice, or hide a device's own measurements: F fits
    on one environment of a device, so imported timings beside latkit's would shadow them."""
    seen: dict[tuple[OpSpec, ...], int] = {}
    for line in lines:
        if line.ops in seen:
            raise LatkitError(
                f"{path}: the same network twice ({path.name}:{seen[line.ops]} and "
                f"{path.name}:{line.line})"
            )
        seen[line.ops] = line.line
    networks = store.networks(name)
    measured = 0 if networks.empty else int((networks["origin"] != IMPORTED).sum())
    if measured or not store.dataframe(name).empty:
        raise LatkitError(
            f"{name!r} already holds op rows or networks timed by latkit in {store.path}: "
            f"import {path.name} under another device name (a device's F fits on one "
            "environment)"
        )
