"""Profiling against the store: measure only what it lacks, commit each result as it finishes."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from latkit.ops import OpSpec
from latkit.profilers.base import MeasuredOp, Profiler
from latkit.records import Stats
from latkit.reporting import Reporter
from latkit.spaces import Network
from latkit.store import MeasurementStore


@dataclass(frozen=True)
class ProfileSummary:
    """What one profile of one device did: `unstable` lists the keys of ops measured now whose
    rounds still disagreed by more than `max_cv` after every retry (stored, and flagged)."""

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

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "label": self.label,
            "ops": self.ops,
            "measured": self.measured,
            "skipped": self.skipped,
            "median_cv": self.median_cv,
            "retried": self.retried,
            "unstable": list(self.unstable),
            "wall_s": self.wall_s,
            "timed_s": self.timed_s,
        }


def profile_ops(
    profiler: Profiler,
    ops: Sequence[OpSpec],
    store: MeasurementStore,
    *,
    fresh: bool = False,
    description: str | None = None,
    reporter: Reporter | None = None,
) -> ProfileSummary:
    """Measure every op of `ops` not yet stored for this device and environment.

    Each finished op is committed in its own transaction before the next is reported, so an
    interruption at any point loses at most the chunk in flight and never duplicates a row.
    Progress goes to `reporter` (default: the profiler's), as one task of `description` (default:
    the device's name and what its numbers are, e.g. an emulated phone's host-CPU numbers).
    """
    started = time.perf_counter()
    device = profiler.device
    reporter = reporter or profiler.options.reporter
    store.register_device(device)
    env = profiler.environment()
    ops = profiler.prepare(ops)
    if fresh:
        store.delete(device.name, env.env_id)
    done = store.measured_keys(device.name, env.env_id)
    todo = [op for op in dict.fromkeys(ops) if op.key not in done]
    if len(todo) < len(ops):
        reporter.note(f"resuming: {len(ops) - len(todo)} of {len(ops)} ops already stored")
    label = f" ({profiler.label})" if profiler.label else ""
    advance = reporter.task(description or f"profiling {device.name}{label}", len(todo))
    finished: list[MeasuredOp] = []

    def commit(result: MeasuredOp) -> None:
        store.add(device.name, result.op, result.stats, env, temperature_c=result.temperature_c)
        finished.append(result)

    profiler.measure(todo, commit, advance)
    return ProfileSummary(
        device=device.name,
        ops=len(ops),
        measured=len(finished),
        skipped=len(ops) - len(todo),
        median_cv=statistics.median(r.stats.cv for r in finished) if finished else 0.0,
        wall_s=time.perf_counter() - started,
        timed_s=sum(r.timed_s for r in finished),
        label=profiler.label,
        unstable=tuple(r.op.key for r in finished if r.op is not None and r.stats.unstable),
        retried=sum(r.stats.attempts > 1 for r in finished),
    )


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
