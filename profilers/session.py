"""Profiling against the store: measure only what it lacks, commit each result as it finishes."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.profilers.base import MeasuredOp, Profiler
from latkit.profilers.load import contended
from latkit.records import Stats
from latkit.reporting import Reporter
from latkit.spaces import Network, SearchSpace
from latkit.store import MeasurementStore


@dataclass(frozen=True)
class RowHealth:
    """The stored rows of some ops on one device and environment: which are flagged unstable
    (rounds that still disagreed after every retry, or timed while the machine was contended),
    which of those were timed while it was busy, and the median CPU time others used meanwhile
    (NaN where no row knows it)."""

    rows: int = 0
    unstable: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    median_busy_cores: float = math.nan

    def describe(self) -> str:
        """E.g. "3 of 70 rows unstable (2 timed while the machine was busy)"."""
        text = f"{len(self.unstable)} of {self.rows} rows unstable"
        if self.busy:
            text += f" ({len(self.busy)} timed while the machine was busy)"
        return text


def row_health(store: MeasurementStore, device: str, env_id: str, keys: Iterable[str]) -> RowHealth:
    """What the store holds for `keys` on `device` in environment `env_id` (`RowHealth`).
    Whether a row was timed on a contended machine is read from its stored load."""
    frame = store.dataframe(device, env_id)
    frame = frame[frame["key"].isin(set(keys))]
    flagged = frame[frame["unstable"].fillna(False).astype(bool)]
    busy = [
        key
        for key, waited, steal in zip(flagged["key"], flagged["waited"], flagged["steal"])
        if contended(waited, steal)
    ]
    known = frame["busy_cores"].dropna()
    return RowHealth(
        rows=len(frame),
        unstable=tuple(flagged["key"]),
        busy=tuple(busy),
        median_busy_cores=float(known.median()) if len(known) else math.nan,
    )


@dataclass(frozen=True)
class ProfileSummary:
    """What one profile of one device did, and what the store now holds for its ops: `unstable`
    lists the keys of its stored rows flagged unstable (rounds that still disagreed by more than
    `max_cv` after every retry, or timed while the machine was contended), `busy` those of them
    timed while it was busy, `rows` how many of its ops the store holds in all."""

    device: str
    ops: int
    measured: int
    skipped: int
    median_cv: float
    wall_s: float
    timed_s: float
    label: str = ""
    unstable: tuple[str, ...] = ()
    retried: int = 0
    rows: int = 0
    busy: tuple[str, ...] = ()
    median_busy_cores: float = math.nan

    def health(self) -> str:
        """E.g. "3 of 70 rows unstable (2 timed while the machine was busy)"."""
        return RowHealth(self.rows, self.unstable, self.busy).describe()

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "label": self.label,
            "ops": self.ops,
            "measured": self.measured,
            "skipped": self.skipped,
            "median_cv": self.median_cv,
            "retried": self.retried,
            "rows": self.rows,
            "unstable": len(self.unstable),
            "busy": len(self.busy),
            "median_busy_cores": None
            if math.isnan(self.median_busy_cores)
            else self.median_busy_cores,
            "unstable_keys": list(self.unstable),
            "wall_s": self.wall_s,
            "timed_s": self.timed_s,
        }


def profile_ops(
    profiler: Profiler,
    ops: Sequence[OpSpec],
    store: MeasurementStore,
    *,
    fresh: bool = False,
    only_unstable: bool = False,
    description: str | None = None,
    reporter: Reporter | None = None,
) -> ProfileSummary:
    """Measure every op of `ops` not yet stored for this device and environment; with
    `only_unstable`, re-measure instead just those whose stored rows are flagged unstable
    (e.g. timed while the machine was busy), replacing them.

    Each finished op is committed in its own transaction before the next is reported, so an
    interruption at any point loses at most the chunk in flight and never duplicates a row.
    Progress goes to `reporter` (default: the profiler's), as one task of `description` (default:
    the device's name and what its numbers are, e.g. an emulated phone's host-CPU numbers).
    """
    if fresh and only_unstable:
        raise LatkitError("--only-unstable re-measures stored rows; --fresh deletes them first")
    started = time.perf_counter()
    device = profiler.device
    reporter = reporter or profiler.options.reporter
    store.register_device(device)
    env = profiler.environment()
    ops = profiler.prepare(ops)
    if fresh:
        store.delete(device.name, env.env_id)
    todo = _todo(store, device.name, env.env_id, ops, only_unstable, reporter)
    label = f" ({profiler.label})" if profiler.label else ""
    advance = reporter.task(description or f"profiling {device.name}{label}", len(todo))
    finished: list[MeasuredOp] = []

    def commit(result: MeasuredOp) -> None:
        store.add(device.name, result.op, result.stats, env, temperature_c=result.temperature_c)
        finished.append(result)

    profiler.measure(todo, commit, advance)
    health = row_health(store, device.name, env.env_id, (op.key for op in ops))
    return ProfileSummary(
        device=device.name,
        ops=len(ops),
        measured=len(finished),
        skipped=len(ops) - len(todo),
        median_cv=statistics.median(r.stats.cv for r in finished) if finished else 0.0,
        wall_s=time.perf_counter() - started,
        timed_s=sum(r.timed_s for r in finished),
        label=profiler.label,
        unstable=health.unstable,
        retried=sum(r.stats.attempts > 1 for r in finished),
        rows=health.rows,
        busy=health.busy,
        median_busy_cores=health.median_busy_cores,
    )


def _todo(
    store: MeasurementStore,
    device: str,
    env_id: str,
    ops: Sequence[OpSpec],
    only_unstable: bool,
    reporter: Reporter,
) -> list[OpSpec]:
    """The ops to time: those not stored yet, or with `only_unstable` those stored unstable."""
    distinct = list(dict.fromkeys(ops))
    if only_unstable:
        health = row_health(store, device, env_id, (op.key for op in distinct))
        flagged = set(health.unstable)
        action = "re-measuring them" if flagged else "nothing to re-measure"
        reporter.note(f"{health.describe()}; {action}")
        return [op for op in distinct if op.key in flagged]
    done = store.measured_keys(device, env_id)
    todo = [op for op in distinct if op.key not in done]
    if len(todo) < len(ops):
        reporter.note(f"resuming: {len(ops) - len(todo)} of {len(ops)} ops already stored")
    return todo


def time_network(
    profiler: Profiler,
    store: MeasurementStore | None,
    network: Network,
    *,
    origin: str,
    name: str | None = None,
    reuse: bool = True,
) -> Stats:
    """The network's end-to-end statistics on the profiler's device: reused when the store holds
    a timing of it in this environment (and `reuse`), else measured and committed under
    `origin`."""
    device = profiler.device
    ops = tuple(profiler.prepare(network.ops))
    env = profiler.environment()
    if store is not None:
        store.register_device(device)
        stats = store.network_stats(device.name, ops, env.env_id) if reuse else None
        if stats is not None:
            return stats
    measured = profiler.measure_network(network)
    if store is not None:
        store.add_network(
            device.name,
            ops,
            measured.stats,
            env,
            name=name or network.name,
            temperature_c=measured.temperature_c,
            origin=origin,
        )
    return measured.stats


#: whole networks a profile times to calibrate F's network terms: enough to fit four terms
#: and to calibrate a 90% CV+ interval (which needs at least 9)
CALIBRATION_NETWORKS = 20
#: random architectures the calibration networks are chosen from
CALIBRATION_POOL = 400


def calibration_archs(
    space: SearchSpace, op_ms: dict[str, float], n: int, seed: int = 0
) -> list[tuple[int, ...]]:
    """`n` architectures spread evenly over the space's range of summed op latency, in pairs:
    at each level the most and the least zero-heavy of the architectures nearest it; then the
    corners the levels may miss (`corners`).

    The pool mixes zero ops at every rate (the fastest architecture, all zeros it can take, is
    always in it), so the per-call cost that each isolated op timing pays can be told apart from
    the per-network overhead, and F is calibrated where a tight target's search goes too.
    """
    layers = space.layers()
    costs = [
        [0.0 if op.type == "zero" else op_ms[op.key] for op in layer.candidates] for layer in layers
    ]
    zeros = [[i for i, op in enumerate(layer.candidates) if op.type == "zero"] for layer in layers]
    rng = random.Random(seed)
    pool = {
        tuple(min(range(len(c)), key=c.__getitem__) for c in costs),
        tuple(max(range(len(c)), key=c.__getitem__) for c in costs),
    }
    for _ in range(CALIBRATION_POOL):
        rate = rng.random()
        pool.add(
            tuple(
                z[0]
                if z and rng.random() < rate
                else rng.choice([i for i in range(len(c)) if i not in z])
                for c, z in zip(costs, zeros)
            )
        )

    def cost(arch: tuple[int, ...]) -> float:
        return sum(c[i] for c, i in zip(costs, arch))

    def zero_count(arch: tuple[int, ...]) -> int:
        return sum(i in z for z, i in zip(zeros, arch))

    left = sorted(pool, key=cost)
    low, high = cost(left[0]), cost(left[-1])
    edges = corners(costs, zeros) if n > 2 else []
    left = [a for a in left if a not in edges]
    levels = (n - len(edges) + 1) // 2
    chosen: list[tuple[int, ...]] = []
    for k in range(levels):
        level = low + (high - low) * (k / max(1, levels - 1))

        def distance(arch: tuple[int, ...], level: float = level) -> float:
            return abs(cost(arch) - level)

        near = sorted(left, key=distance)[: max(2, len(pool) // (2 * levels))]
        heavy = max(near, key=lambda a: (zero_count(a), -distance(a)))
        rest = [a for a in near if a != heavy]
        light = min(rest, key=lambda a: (zero_count(a), distance(a))) if rest else None
        for pick in (heavy, light):
            if pick is not None and len(chosen) < n - len(edges):
                chosen.append(pick)
                left.remove(pick)
    return chosen + edges


def corners(costs: list[list[float]], zeros: list[list[int]]) -> list[tuple[int, ...]]:
    """The slowest architecture (widest, largest: the most bytes in flight) and the deepest
    one (no zero op, the cheapest candidate everywhere): where a network's cost departs most
    from its op sum, one way (caches) or the other (per-call costs)."""
    slowest = tuple(max(range(len(c)), key=c.__getitem__) for c in costs)
    deepest = tuple(
        min((i for i in range(len(c)) if i not in z), key=c.__getitem__)
        for c, z in zip(costs, zeros)
    )
    return list(dict.fromkeys([slowest, deepest]))


def calibrate(
    profiler: Profiler,
    store: MeasurementStore,
    space: SearchSpace,
    *,
    n: int = CALIBRATION_NETWORKS,
    seed: int = 0,
    description: str | None = None,
    reporter: Reporter | None = None,
) -> list[tuple[Network, Stats]]:
    """Time `n` whole networks of `space` (`calibration_archs`) end to end, with the same
    estimator as the ops (pooled rounds, retries: `time_network`), and store them with origin
    `calibrate`: what networks pay beyond their ops, which `latkit fit` turns into F's network
    terms. Needs every op of the space profiled; networks already stored are reused, so an
    interrupted calibration resumes."""
    device = profiler.device
    reporter = reporter or profiler.options.reporter
    env = profiler.environment()
    frame = store.dataframe(device.name, env.env_id)
    op_ms = dict(zip(frame["key"], frame["median_ms"]))
    ops = space.distinct_ops()
    missing = [op.key for op in profiler.prepare(ops) if op.key not in op_ms]
    if missing:
        raise LatkitError(
            f"calibrating {space.name} on {device.name} needs all its ops profiled first; "
            f"{len(missing)} are not (e.g. {missing[0]})"
        )
    by_key = {op.key: op_ms[p.key] for op, p in zip(ops, profiler.prepare(ops))}
    archs = calibration_archs(space, by_key, n, seed)
    advance = reporter.task(
        description or f"calibrating {device.name} on whole networks", len(archs)
    )
    timed = []
    for i, arch in enumerate(archs):
        network = space.network(arch, name=f"{space.name}-calibrate-{i}")
        timed.append((network, time_network(profiler, store, network, origin="calibrate")))
        advance(1)
    return timed
