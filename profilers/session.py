"""Profiling against the store: measure only what it lacks, commit each result as it finishes."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.profilers.base import MeasuredOp, Profiler
from latkit.records import Stats
from latkit.reporting import Reporter
from latkit.spaces import Network, SearchSpace
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


#: whole networks a profile times to calibrate F's network terms
CALIBRATION_NETWORKS = 10
#: random architectures the calibration networks are chosen from
CALIBRATION_POOL = 400
#: timings per calibration network, the fastest kept (see `time_network_fastest`)
CALIBRATION_TIMINGS = 2


def calibration_archs(
    space: SearchSpace, op_ms: dict[str, float], n: int, seed: int = 0
) -> list[tuple[int, ...]]:
    """`n` architectures spread evenly over the space's range of summed op latency, in pairs:
    at each level the most and the least zero-heavy of the architectures nearest it.

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
    levels = (n + 1) // 2
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
            if pick is not None and len(chosen) < n:
                chosen.append(pick)
                left.remove(pick)
    return chosen


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
    """Time `n` whole networks of `space` (`calibration_archs`) end to end, each the fastest of
    `CALIBRATION_TIMINGS` timings, and store them with origin `calibrate`: what networks pay
    beyond their ops, which `latkit fit` turns into F's network terms. Needs every op of the
    space profiled; networks already stored are reused, so an interrupted calibration resumes."""
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
        ops = tuple(profiler.prepare(network.ops))
        stats = store.network_stats(device.name, ops, env.env_id) or time_network_fastest(
            profiler, store, network, origin="calibrate", repeats=CALIBRATION_TIMINGS
        )
        timed.append((network, stats))
        advance(1)
    return timed


def time_network_fastest(
    profiler: Profiler,
    store: MeasurementStore | None,
    network: Network,
    *,
    origin: str,
    repeats: int = 2,
    name: str | None = None,
) -> Stats:
    """The network timed `repeats` times afresh, the run with the lowest median kept and
    committed under `origin`: background load (another process on a shared core) only ever adds
    time, so the fastest of a few timings is the one that describes the device."""
    runs = [profiler.measure_network(network) for _ in range(max(1, repeats))]
    best = min(runs, key=lambda m: m.stats.median_ms)
    if store is not None:
        device = profiler.device
        store.register_device(device)
        store.add_network(
            device.name,
            tuple(profiler.prepare(network.ops)),
            best.stats,
            profiler.environment(),
            name=name or network.name,
            temperature_c=best.temperature_c,
            origin=origin,
        )
    return best.stats
