"""The timing method every profiler shares.

Warm up, then time `runs` calls per round. Ops are interleaved across `rounds` (round 1 of every op
in a chunk, then round 2, ...), so drift and heat spread over all ops instead of landing on the
last ones. An op whose round medians disagree by more than `max_cv` is measured again.

Clocks are explicit about synchronisation: a clock synchronises the device before every host-clock
read, so asynchronous runtimes (CUDA) are timed for execution, not for launch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from latkit.devices import Timing
from latkit.records import Stats


@dataclass(frozen=True)
class Measurement:
    """Raw per-run times (ms) of each round, and the statistics derived from them."""

    rounds: tuple[tuple[float, ...], ...]

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
        return float(self.times.sum() / 1000)

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
        )


class Clock(Protocol):
    """Times one call. `start` and `stop` must leave the device idle before reading any clock."""

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


def time_round(run: Runner, clock: Clock, warmup: int, runs: int) -> tuple[float, ...]:
    """Warm up, synchronise, then time `runs` calls one by one (ms each)."""
    for _ in range(warmup):
        run()
    clock.synchronize()
    times = []
    for _ in range(runs):
        token = clock.start()
        run()
        times.append(clock.stop(token))
    return tuple(times)


def measure_interleaved(
    runners: Sequence[Runner],
    clock: Clock,
    plan: Timing,
    on_op_round: Callable[[int], None] | None = None,
) -> list[Measurement]:
    """Time every runner for `plan.rounds` rounds, round-robin, and re-measure unstable ones.

    A re-measured op gets `plan.rounds` fresh rounds, interleaved with the other unstable ops;
    the rounds with the lowest CV are kept, so one noisy burst cannot poison the row.
    `on_op_round(i)` is called after each round of runner `i`.
    """
    results = [Measurement(()) for _ in runners]
    pending = list(range(len(runners)))
    for attempt in range(plan.max_retries + 1):
        fresh: dict[int, list[tuple[float, ...]]] = {i: [] for i in pending}
        for _ in range(plan.rounds):
            for i in pending:
                fresh[i].append(time_round(runners[i], clock, plan.warmup, plan.runs))
                if on_op_round:
                    on_op_round(i)
        for i in pending:
            candidate = Measurement(tuple(fresh[i]))
            if not results[i].rounds or candidate.cv < results[i].cv:
                results[i] = candidate
        pending = [i for i in pending if results[i].cv > plan.max_cv]
        if not pending or attempt == plan.max_retries:
            break
    return results


def chunks(items: Iterable, size: int) -> Iterable[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
