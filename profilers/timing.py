"""The timing method every profiler shares.

Ops are interleaved across `rounds` (round 1 of every op in a chunk, then round 2, ...), so drift
and heat spread over all ops instead of landing on the last ones. An op's first round warms it up
fully (`warmup` samples); later rounds only re-warm (`rewarm` samples): the op stays loaded between
rounds and only its caches need refilling. An op whose rounds disagree by more than `max_cv` gets
`rounds` more rounds, pooled with the earlier ones (a minimum over redraws would bias the row
low), at most `max_retries` times; one still above `max_cv` after that is flagged, not hidden.

How one round is taken is the profiler's business: on a host, `HostSampler` times calls with a
clock; a phone's benchmark_model returns a summary per run. `interleave` only schedules rounds,
pools them and decides retries.

While a host times, garbage collection is off (as `timeit` does: a collection inside a timed call
is the collector's cost, not the op's), and a single-threaded runtime's thread is pinned to the
core it runs on when timing starts, where the OS allows (a migration mid-round refills caches on
another core); both are restored afterwards. Nothing sleeps around a timing: an idle core clocks
down, and the next round would be timed on a slower core.

Each host-timed stretch (a chunk of ops interleaved, or one network) also records how busy the
machine was (`latkit.profilers.load`): ops timed while other processes left the profiler no free
core, or while the hypervisor stole CPU time, are flagged `unstable` like ops whose rounds
disagreed, since their numbers may be the neighbours' as much as the op's.

Clocks are explicit about synchronisation: a clock synchronises the device before every host-clock
read, so asynchronous runtimes (CUDA) are timed for execution, not for launch. Microsecond ops (a
call under a hundredth of `min_block_ms`, 10 µs by default) are called in blocks between two clock
reads, each lasting at least `min_block_ms`, as `torch.utils.benchmark` does, so the clock's own
cost and resolution vanish in the block; the per-call time is derived.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

from latkit.devices import Timing
from latkit.profilers.load import Load, LoadProbe
from latkit.records import Stats

#: the most calls one clock read covers (a 0.1 µs call reaches 1 ms at 10^4)
MAX_BLOCK = 10_000
#: ops faster than this share of `min_block_ms` are timed in blocks
BLOCK_BELOW = 0.01
#: warm single calls timed, at least, to tell a microsecond op from a longer one
SIZING_CALLS = 3


class Pooled(Protocol):
    """The pooled rounds of one op, whatever one round holds."""

    @property
    def cv(self) -> float: ...

    @property
    def timed_s(self) -> float: ...

    def stats(self) -> Stats: ...


R = TypeVar("R")
M = TypeVar("M", bound=Pooled)


@dataclass(frozen=True)
class Measurement:
    """Raw per-call times (ms) of every timed sample, by round, and their exact statistics.

    Each sample is one clock read around `block` calls; its value is the per-call time."""

    rounds: tuple[tuple[float, ...], ...]
    block: int = 1

    @property
    def times(self) -> np.ndarray:
        return np.concatenate([np.asarray(r, dtype=float) for r in self.rounds])

    @property
    def round_medians(self) -> np.ndarray:
        return np.array([np.median(r) for r in self.rounds])

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def mean(self) -> float:
        return float(np.mean(self.times))

    @property
    def cv(self) -> float:
        """Spread *across rounds*: std / mean of the round medians (0 for one round)."""
        medians = self.round_medians
        if len(medians) < 2 or medians.mean() == 0:
            return 0.0
        return float(medians.std(ddof=1) / medians.mean())

    @property
    def timed_s(self) -> float:
        """Seconds spent in timed calls."""
        return float(self.times.sum() * self.block / 1000)

    def stats(self) -> Stats:
        t = self.times
        return Stats(
            median_ms=float(np.median(t)),
            mean_ms=float(t.mean()),
            std_ms=float(t.std(ddof=1)) if len(t) > 1 else 0.0,
            min_ms=float(t.min()),
            max_ms=float(t.max()),
            p10_ms=float(np.percentile(t, 10)),
            p90_ms=float(np.percentile(t, 90)),
            cv=self.cv,
            runs=int(len(t)),
            block=self.block,
            exact=True,
        )


@dataclass(frozen=True)
class Outcome(Generic[M]):
    """One op's pooled rounds, how many attempts they took, whether they stayed unstable, and
    how busy the machine was meanwhile (unknown where nobody measured it)."""

    measurement: M
    attempts: int
    unstable: bool
    load: Load = Load()

    @property
    def timed_s(self) -> float:
        return self.measurement.timed_s

    @property
    def contended(self) -> bool:
        """Timed while the profiler was kept off its core (`Load.contended`)."""
        return self.load.contended

    def stats(self) -> Stats:
        """The row's statistics: flagged unstable when its rounds disagreed after every retry
        or when it was timed on a contended machine."""
        return dataclasses.replace(
            self.measurement.stats(),
            attempts=self.attempts,
            unstable=self.unstable or self.contended,
            busy_cores=self.load.busy_cores,
            steal=self.load.steal,
            waited=self.load.waited,
        )


def interleave(
    takers: Sequence[Callable[[int], R]],
    pool: Callable[[int, Sequence[R]], M],
    plan: Timing,
    *,
    rewarm: int | None = None,
    on_op_round: Callable[[int], None] | None = None,
) -> list[Outcome[M]]:
    """Take `plan.rounds` rounds of every op round-robin, and more rounds of unstable ones.

    `takers[i](warmup)` takes one round of op `i` after `warmup` untimed samples: `plan.warmup`
    for its first round, `rewarm` (default: the plan's, at most its warm-up) for later ones; a
    runtime that reloads the op every round passes `rewarm=plan.warmup`. `pool(i, rounds)` turns
    op `i`'s rounds into its measurement. `on_op_round(i)` is called after each of op `i`'s first
    `plan.rounds` rounds, so progress adds up to one per op.
    """
    later = min(plan.rewarm, plan.warmup) if rewarm is None else rewarm
    rounds: list[list[R]] = [[] for _ in takers]
    attempts = [0] * len(takers)
    pending = list(range(len(takers)))
    for _ in range(plan.max_retries + 1):
        for _ in range(plan.rounds):
            for i in pending:
                rounds[i].append(takers[i](later if rounds[i] else plan.warmup))
                if on_op_round and attempts[i] == 0:
                    on_op_round(i)
        for i in pending:
            attempts[i] += 1
        pending = [i for i in pending if pool(i, rounds[i]).cv > plan.max_cv]
        if not pending:
            break
    outcomes = []
    for i, (taken, count) in enumerate(zip(rounds, attempts)):
        measurement = pool(i, taken)
        outcomes.append(Outcome(measurement, count, measurement.cv > plan.max_cv))
    return outcomes


class Clock(Protocol):
    """Times a stretch of calls. `start` and `stop` must leave the device idle before reading
    any clock."""

    def start(self) -> object: ...

    def stop(self, token: object) -> float: ...

    def synchronize(self) -> None: ...


class HostClock:
    """`perf_counter`, with a synchronise hook called before every read (no-op on the CPU)."""

    def __init__(
        self,
        synchronize: Callable[[], None] | None = None,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._sync = synchronize or (lambda: None)
        self._now = now

    def synchronize(self) -> None:
        self._sync()

    def start(self) -> float:
        self._sync()
        return self._now()

    def stop(self, token: object) -> float:
        self._sync()
        return (self._now() - float(token)) * 1000.0


class Runner(Protocol):
    """One loaded op or network: calling it runs one inference."""

    def __call__(self) -> object: ...


def time_block(run: Runner, clock: Clock, calls: int) -> float:
    """Milliseconds for `calls` back-to-back calls, between two clock reads."""
    token = clock.start()
    for _ in range(calls):
        run()
    return clock.stop(token)


def block_size(
    run: Runner, clock: Clock, min_block_ms: float, single_ms: float | None = None
) -> int:
    """Calls per clock read: 1 for an op whose call takes at least a hundredth of `min_block_ms`
    (a host clock read, about 0.1 µs, is then at most 1% of it); for faster, microsecond ops, a
    block sized so one read covers at least `min_block_ms`, found by timing growing blocks as
    `torch.utils.benchmark` does. Longer blocks than needed would only collect more preemptions
    on a shared machine. `single_ms`: one warm call's time, when already known."""
    if min_block_ms <= 0:
        return 1
    if single_ms is None:
        single_ms = min(time_block(run, clock, 1) for _ in range(SIZING_CALLS))
    if single_ms >= BLOCK_BELOW * min_block_ms:
        return 1
    calls = max(2, math.ceil(1.2 * min_block_ms / max(single_ms, 1e-6)))
    while calls < MAX_BLOCK:
        elapsed = time_block(run, clock, calls)
        if elapsed >= min_block_ms:
            break
        grow = math.ceil(calls * 1.2 * min_block_ms / max(elapsed, 1e-6))
        calls = max(2 * calls, grow)
    return min(calls, MAX_BLOCK)


def time_round(
    run: Runner, clock: Clock, warmup: int, runs: int, block: int = 1
) -> tuple[float, ...]:
    """Warm up (`warmup` samples), synchronise, then time `runs` samples of `block` calls each;
    returns the per-call ms of each sample."""
    for _ in range(warmup * block):
        run()
    clock.synchronize()
    return tuple(time_block(run, clock, block) / block for _ in range(runs))


class HostSampler:
    """Takes rounds of one loaded op on this host. Its first round times its warm-up calls one
    by one (the first call, with lazy initialisation, aside) to fix the block size, which every
    later round keeps so that all its samples are alike; a blocked op then warms up in blocks."""

    def __init__(self, run: Runner, clock: Clock, plan: Timing) -> None:
        self.run, self.clock, self.plan = run, clock, plan
        self.block: int | None = None

    def __call__(self, warmup: int) -> tuple[float, ...]:
        if self.block is None:
            calls = 1 + max(warmup, SIZING_CALLS)
            singles = [time_block(self.run, self.clock, 1) for _ in range(calls)]
            self.block = block_size(self.run, self.clock, self.plan.min_block_ms, min(singles[1:]))
            warmup = warmup if self.block > 1 else 0  # one call per sample: warm already
        return time_round(self.run, self.clock, warmup, self.plan.runs, self.block)

    def pool(self, rounds: Sequence[tuple[float, ...]]) -> Measurement:
        return Measurement(tuple(rounds), self.block or 1)


def current_core() -> int | None:
    """The core this thread runs on now (field 39 of /proc/thread-self/stat), or None."""
    try:
        with open("/proc/thread-self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def quiet_timing(pin: bool) -> Iterator[None]:
    """GC off, and with `pin` this thread kept on the core it runs on, for the block."""
    enabled = gc.isenabled()
    gc.disable()
    affinity = None
    if pin and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            affinity = os.sched_getaffinity(0)
            core = current_core()
            if len(affinity) > 1 and core in affinity:
                os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        if affinity is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, affinity)
        if enabled:
            gc.enable()


def measure_interleaved(
    runners: Sequence[Runner],
    clock: Clock,
    plan: Timing,
    on_op_round: Callable[[int], None] | None = None,
    pin: bool = False,
) -> list[Outcome[Measurement]]:
    """Time every runner on this host with `interleave`, GC off and, with `pin` (a
    single-threaded runtime), pinned to one core (`quiet_timing`); every outcome carries the
    machine's load over the whole stretch (`LoadProbe`, created before pinning so that it
    watches every core the process may use)."""
    samplers = [HostSampler(run, clock, plan) for run in runners]
    probe = LoadProbe()
    with quiet_timing(pin):
        probe.before()
        outcomes = interleave(
            samplers, lambda i, rounds: samplers[i].pool(rounds), plan, on_op_round=on_op_round
        )
        load = probe.after()
    return [dataclasses.replace(outcome, load=load) for outcome in outcomes]


def chunks(items: Iterable, size: int) -> Iterable[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
