"""Profile a search space on one device into the store: what `latkit profile` runs.

Two steps: every distinct op of the space, then a handful of whole networks of the space
(calibration: what networks pay beyond the sum of their ops, which `latkit fit` learns).
Resumable by construction: ops and networks already stored for the device's environment are
skipped, and each finished one is committed before the next, so running it again continues where
it stopped. With `only_unstable`, only the stored op rows flagged unstable (rounds that
disagreed, or timed while the machine was busy) are measured again, and nothing else is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.profilers import Profiler, ProfilerOptions, get_profiler
from latkit.profilers.session import (
    CALIBRATION_NETWORKS,
    ProfileSummary,
    calibrate,
    profile_ops,
)
from latkit.reporting import Reporter
from latkit.spaces import SearchSpace
from latkit.store import MeasurementStore


def profile_space(
    config: DeviceConfig,
    space: SearchSpace,
    store: MeasurementStore,
    *,
    limit: int | None = None,
    fresh: bool = False,
    only_unstable: bool = False,
    keep_files: bool = False,
    raw_dir: Path = Path("data/raw"),
    calibration: int = CALIBRATION_NETWORKS,
    reporter: Reporter | None = None,
) -> ProfileSummary:
    """Measure every distinct op of `space` (the first `limit`, if given) on the device, then
    time `calibration` whole networks of it (not with `limit`: they need every op, nor with
    `only_unstable`, which re-measures just the op rows flagged unstable).

    The unit of work of a fleet too: `latkit.workflows.fleet` runs it once per device, each in
    its own process with its own connection to the store."""
    check_options(config, keep_files, fresh=fresh, only_unstable=only_unstable)
    profiler = open_profiler(config, keep_files, raw_dir, reporter)
    try:
        return profile_steps(
            profiler,
            space,
            store,
            limit=limit,
            fresh=fresh,
            only_unstable=only_unstable,
            calibration=calibration,
        )
    finally:
        profiler.close()


def open_profiler(
    config: DeviceConfig, keep_files: bool, raw_dir: Path, reporter: Reporter | None
) -> Profiler:
    """The device's profiler, reporting to `reporter` (silent when None); the caller closes it."""
    options = ProfilerOptions(keep_files=keep_files, raw_dir=raw_dir)
    if reporter is not None:
        options = replace(options, reporter=reporter)
    return get_profiler(config, options)


def profile_network_ops(
    config: DeviceConfig,
    ops: Sequence[OpSpec],
    store: MeasurementStore,
    *,
    only_unstable: bool = False,
    keep_files: bool = False,
    raw_dir: Path = Path("data/raw"),
    reporter: Reporter | None = None,
) -> ProfileSummary:
    """Measure the distinct ops among `ops` (those of networks mapped from ONNX files: mapping
    makes no zero op, and a network it leaves without ops is refused) on the device, resumable
    and stored like a space's. No calibration networks follow: those are drawn from a space,
    and `latkit fit` learns the network terms from them."""
    check_options(config, keep_files, only_unstable=only_unstable)
    profiler = open_profiler(config, keep_files, raw_dir, reporter)
    try:
        return profile_ops(profiler, list(dict.fromkeys(ops)), store, only_unstable=only_unstable)
    finally:
        profiler.close()


def profile_steps(
    profiler: Profiler,
    space: SearchSpace,
    store: MeasurementStore,
    *,
    limit: int | None = None,
    fresh: bool = False,
    only_unstable: bool = False,
    calibration: int = CALIBRATION_NETWORKS,
    ops_title: str | None = None,
    calibration_title: str | None = None,
    on_ops: Callable[[ProfileSummary], None] | None = None,
) -> ProfileSummary:
    """The two steps of `profile_space` on a profiler the caller holds open (`latkit
    quickstart` goes on to validate F with it): the ops, then the calibration networks.
    `ops_title` and `calibration_title` name the steps' progress (a caller numbers its stages);
    `on_ops` hears the ops' summary before calibration starts."""
    ops = space.distinct_ops()[:limit] if limit else space.distinct_ops()
    summary = profile_ops(
        profiler, ops, store, fresh=fresh, only_unstable=only_unstable, description=ops_title
    )
    if on_ops is not None:
        on_ops(summary)
    if calibration > 0 and not limit and not only_unstable:
        calibrate(
            profiler,
            store,
            space,
            n=calibration,
            description=calibration_title
            or f"calibrating {profiler.device.name} on {calibration} whole networks",
        )
    return summary


def check_options(
    config: DeviceConfig, keep_files: bool, *, fresh: bool = False, only_unstable: bool = False
) -> None:
    """Refuse options the device cannot use, or that contradict each other, before anything
    runs."""
    if fresh and only_unstable:
        raise LatkitError(
            "--only-unstable re-measures the stored rows flagged unstable; --fresh (or "
            "--no-resume) deletes every stored row first: choose one"
        )
    if keep_files and config.kind != "android":
        raise LatkitError(
            f"--keep applies to Android devices only (files pushed to a phone), not {config.name} "
            f"(kind {config.kind})"
        )
