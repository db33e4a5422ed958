"""A profiling session: skip what the store has, measure the rest, commit op by op."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from latkit.devices import DeviceConfig
from latkit.ops import OpSpec
from latkit.store import MeasurementStore
from profilers.base import MeasuredOp, Profiler


@dataclass(frozen=True)
class ProfileSummary:
    device: str
    ops: int
    measured: int
    skipped: int
    median_cv: float
    wall_s: float
    timed_s: float
    label: str = ""

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "ops": self.ops,
            "median_cv": self.median_cv,
            "wall_s": self.wall_s,
            "timed_s": self.timed_s,
        }


def register(store: MeasurementStore, device: DeviceConfig) -> None:
    """Remember the device file in the store, so later commands accept its name alone."""
    store.register_device(
        device.name, device.kind, device.runtime, device.model_dump(mode="json"), device.source
    )


def profile_ops(
    profiler: Profiler,
    ops: Sequence[OpSpec],
    store: MeasurementStore,
    *,
    fresh: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> ProfileSummary:
    """Measure every op of `ops` not yet stored for this device and environment.

    Each finished op is committed in its own transaction before the next is reported, so an
    interruption at any point loses at most the chunk in flight and never duplicates a row.
    """
    started = time.perf_counter()
    device = profiler.device
    register(store, device)
    env = profiler.environment()
    ops = profiler.prepare(ops)
    if fresh:
        store.delete(device.name, env.env_id)
    done = store.measured_keys(device.name, env.env_id)
    todo = [op for op in dict.fromkeys(ops) if op.key not in done]
    if on_start:
        on_start(len(ops), len(todo))
    finished: list[MeasuredOp] = []

    def commit(result: MeasuredOp) -> None:
        store.add(device.name, result.op, result.stats, env, temperature_c=result.temperature_c)
        finished.append(result)

    profiler.measure(todo, commit, on_progress)
    return ProfileSummary(
        device=device.name,
        ops=len(ops),
        measured=len(finished),
        skipped=len(ops) - len(todo),
        median_cv=statistics.median(r.stats.cv for r in finished) if finished else 0.0,
        wall_s=time.perf_counter() - started,
        timed_s=sum(r.timed_s for r in finished),
        label=profiler.label,
    )
