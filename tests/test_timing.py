"""The shared timing loop: warm-up and re-warm, rounds interleaved, blocks of calls for
microsecond ops, pooled retries, statistics, synchronisation."""

from __future__ import annotations

import numpy as np
import pytest

from latkit.devices import Timing
from latkit.profilers.timing import (
    HostClock,
    Measurement,
    block_size,
    interleave,
    measure_interleaved,
    time_round,
)


class FakeClockDevice:
    """An asynchronous 'device' that records the order of launches, syncs and clock reads."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.t = 0.0

    def launch(self, name: str):
        def run() -> None:
            self.log.append(f"run:{name}")
            self.t += 0.001

        return run

    def sync(self) -> None:
        self.log.append("sync")

    def now(self) -> float:
        self.log.append("clock")
        return self.t


def test_every_clock_read_follows_a_synchronise():
    dev = FakeClockDevice()
    clock = HostClock(synchronize=dev.sync, now=dev.now)
    times = time_round(dev.launch("a"), clock, warmup=3, runs=4)
    assert len(times) == 4 and all(t == pytest.approx(1.0) for t in times)
    assert dev.log[:3] == ["run:a"] * 3  # warm-up first, untimed
    for i, entry in enumerate(dev.log):
        if entry == "clock":
            assert dev.log[i - 1] == "sync", f"clock read without sync at {i}: {dev.log}"
    assert dev.log.count("clock") == 8


def test_a_loop_without_synchronisation_would_be_caught():
    dev = FakeClockDevice()
    clock = HostClock(synchronize=None, now=dev.now)
    time_round(dev.launch("a"), clock, warmup=0, runs=2)
    unsynced = [i for i, e in enumerate(dev.log) if e == "clock" and dev.log[i - 1] != "sync"]
    assert unsynced  # the check above really discriminates


def test_first_round_warms_up_fully_later_rounds_rewarm_and_ops_interleave():
    dev = FakeClockDevice()
    clock = HostClock(synchronize=dev.sync, now=dev.now)
    plan = Timing(warmup=4, rewarm=1, runs=2, rounds=3, max_cv=1.0)
    measure_interleaved([dev.launch("a"), dev.launch("b")], clock, plan)
    order = [e for e in dev.log if e.startswith("run")]
    # round 1: the first call and 4 warm-up calls, each timed to size the block (1 ms: one call
    # per clock read), then 2 timed; later rounds: 1 re-warm call, 2 timed; a and b alternate
    first, later = 1 + 4 + 2, 1 + 2
    assert (
        order == ["run:a"] * first + ["run:b"] * first + (["run:a"] * later + ["run:b"] * later) * 2
    )


def test_interleave_passes_warmups_and_counts_attempts():
    seen: dict[int, list[int]] = {0: [], 1: []}
    values = {0: iter([1.0, 1.0, 1.0]), 1: iter([1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])}

    class Spread:
        def __init__(self, rounds):
            self.rounds = list(rounds)

        @property
        def cv(self) -> float:
            return float(np.std(self.rounds, ddof=1) / np.mean(self.rounds))

        timed_s = 0.0

    def taker(i):
        def take(warmup: int) -> float:
            seen[i].append(warmup)
            return next(values[i])

        return take

    plan = Timing(warmup=7, rewarm=2, rounds=3, max_cv=0.2, max_retries=2)
    a, b = interleave([taker(0), taker(1)], lambda i, rounds: Spread(rounds), plan)
    assert seen[0] == [7, 2, 2] and seen[1] == [7] + [2] * 8
    assert (a.attempts, a.unstable) == (1, False)
    # op 1 pooled all 9 rounds (the 3.0 stays in): still above max_cv after 2 retries
    assert (b.attempts, len(b.measurement.rounds)) == (3, 9)
    assert b.unstable == (
        np.std(b.measurement.rounds, ddof=1) / np.mean(b.measurement.rounds) > 0.2
    )
    # a runtime that reloads the op every round asks for the full warm-up each time
    seen = {0: [], 1: []}
    values = {0: iter([1.0] * 3), 1: iter([1.0] * 3)}
    interleave([taker(0), taker(1)], lambda i, r: Spread(r), plan, rewarm=plan.warmup)
    assert seen == {0: [7, 7, 7], 1: [7, 7, 7]}


def _scripted(durations_ms, state):
    """A runner whose successive calls take the given times on a fake clock."""
    durations = iter(durations_ms)

    def run() -> None:
        state["calls"] += 1
        state["t"] += next(durations) / 1000

    return run


def test_retries_pool_rounds_and_a_still_unstable_op_is_flagged():
    state = {"t": 0.0, "calls": 0}
    # four sizing calls (the plan has no warm-up), then one timed call per round: a burst in the
    # first attempt's rounds, then stable rounds; pooling keeps the burst, so it stays unstable
    run = _scripted([9, 9, 9, 9, 1, 5, 25] + [2] * 6, state)
    clock = HostClock(now=lambda: state["t"])
    plan = Timing(warmup=0, rewarm=0, runs=1, rounds=3, max_cv=0.05, max_retries=2, min_block_ms=0)
    (outcome,) = measure_interleaved([run], clock, plan)
    assert state["calls"] == 13
    timed = [r for (r,) in outcome.measurement.rounds]
    assert timed == pytest.approx([1.0, 5.0, 25.0] + [2.0] * 6)
    stats = outcome.stats()
    assert (stats.attempts, stats.unstable, stats.runs, stats.exact) == (3, True, 9, True)
    assert stats.median_ms == pytest.approx(2.0)
    assert stats.cv == pytest.approx(np.std([1, 5, 25, 2, 2, 2, 2, 2, 2], ddof=1) / 43 * 9)


def test_an_op_that_settles_on_retry_is_not_flagged():
    state = {"t": 0.0, "calls": 0}
    run = _scripted([9, 9, 9, 9, 2.0, 2.6, 2.0] + [2.0] * 3, state)
    clock = HostClock(now=lambda: state["t"])
    plan = Timing(warmup=0, rewarm=0, runs=1, rounds=3, max_cv=0.15, max_retries=2, min_block_ms=0)
    (outcome,) = measure_interleaved([run], clock, plan)
    stats = outcome.stats()
    pooled = [2.0, 2.6, 2.0, 2.0, 2.0, 2.0]
    assert np.std(pooled[:3], ddof=1) / np.mean(pooled[:3]) > 0.15  # the first attempt failed
    assert (stats.attempts, outcome.unstable, stats.runs) == (2, False, 6)
    assert stats.unstable == outcome.contended  # flagged only if the machine was busy
    assert stats.cv == pytest.approx(np.std(pooled, ddof=1) / np.mean(pooled))


def test_microsecond_ops_are_timed_in_blocks_of_at_least_a_millisecond():
    # a 4 us op on a clock whose every read costs 2 us: one call per read would report 6 us
    state = {"t": 0.0}

    def now() -> float:
        state["t"] += 2e-6
        return state["t"]

    def run() -> None:
        state["t"] += 4e-6

    clock = HostClock(now=now)
    plan = Timing(warmup=2, runs=5, rounds=2, max_cv=1.0)
    assert time_round(run, clock, 0, 3) == pytest.approx((0.006,) * 3)  # the bias blocks remove
    (outcome,) = measure_interleaved([run], clock, plan)
    stats = outcome.stats()
    assert stats.block * 0.004 >= plan.min_block_ms  # one clock read covers >= 1 ms of calls
    assert stats.block < 2 * plan.min_block_ms / 0.004
    assert stats.median_ms == pytest.approx(0.004, rel=0.01)  # per-call time, derived
    assert stats.runs == 10 and outcome.timed_s == pytest.approx(10 * stats.block * 4e-6, rel=0.01)
    # ops above a hundredth of min_block_ms are timed one call per read, those below in blocks
    assert block_size(lambda: state.update(t=state["t"] + 0.00002), clock, 1.0) == 1
    assert block_size(lambda: state.update(t=state["t"] + 0.000005), clock, 1.0) >= 200


def test_measurement_statistics():
    m = Measurement(((1.0, 2.0, 3.0, 4.0), (2.0, 2.0, 2.0, 2.0)))
    s = m.stats()
    assert s.runs == 8 and s.min_ms == 1.0 and s.max_ms == 4.0
    assert s.median_ms == pytest.approx(2.0) and s.mean_ms == pytest.approx(2.25)
    assert s.p10_ms == pytest.approx(np.percentile(m.times, 10))
    assert m.cv == pytest.approx(np.std([2.5, 2.0], ddof=1) / 2.25)
    assert m.timed_s == pytest.approx(0.018)
    assert s.exact and s.block == 1 and (s.attempts, s.unstable) == (1, False)
    blocked = Measurement(m.rounds, block=10)
    assert blocked.stats().median_ms == s.median_ms and blocked.timed_s == pytest.approx(0.18)


def test_timing_runs_without_gc_pinned_to_one_core_and_restores_both():
    import gc
    import os

    from latkit.profilers.timing import current_core, quiet_timing

    allowed = os.sched_getaffinity(0)
    seen = []

    def run() -> None:
        seen.append((gc.isenabled(), os.sched_getaffinity(0)))

    plan = Timing(warmup=1, runs=2, rounds=1, min_block_ms=0)
    measure_interleaved([run], HostClock(), plan, pin=True)
    assert seen and all(not enabled for enabled, _ in seen)
    expected = 1 if len(allowed) > 1 else len(allowed)
    assert all(len(cores) == expected and cores <= allowed for _, cores in seen)
    assert gc.isenabled() and os.sched_getaffinity(0) == allowed
    gc.disable()  # a caller that had it off keeps it off
    try:
        with quiet_timing(pin=False):
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert current_core() in allowed


def test_torch_profiler_gives_back_torch_threads_on_close(tmp_path):
    import torch

    from latkit.devices import parse_device
    from latkit.profilers import get_profiler

    before = torch.get_num_threads()
    device = parse_device(
        {"name": "t", "kind": "cpu", "runtime": "torch", "threads": before + 1}, "t.yaml"
    )
    profiler = get_profiler(device)
    assert torch.get_num_threads() == before + 1
    profiler.close()
    assert torch.get_num_threads() == before


def test_every_outcome_carries_the_load_and_a_contended_one_is_flagged():
    import os

    from latkit.profilers.load import Load, core_count
    from latkit.profilers.timing import Outcome

    plan = Timing(warmup=1, runs=3, rounds=2, max_cv=10.0, min_block_ms=0)
    outcomes = measure_interleaved([lambda: None, lambda: None], HostClock(), plan, pin=True)
    loads = {outcome.load for outcome in outcomes}
    assert len(loads) == 1  # one stretch, one load for all its ops
    (load,) = loads
    if os.path.exists("/proc/stat"):  # measured over the cores the process may use, not one
        assert load.cores == core_count()
        assert 0.0 <= load.waited <= 1.0  # exact over any stretch; busy_cores needs 0.25 s
    stats = outcomes[0].stats()
    assert stats.unstable == load.contended and stats.waited == load.waited

    calm = Measurement(((1.0, 1.0), (1.0, 1.0)))
    busy = Outcome(calm, attempts=1, unstable=False, load=Load(1.9, 0.0, 4.0, 2, 0.3))
    quiet = Outcome(calm, attempts=1, unstable=False, load=Load(0.1, 0.0, 1.0, 2))
    assert busy.stats().unstable and busy.stats().busy_cores == 1.9  # rounds agreed: busy
    assert not quiet.stats().unstable and quiet.stats().steal == 0.0
    assert not Outcome(calm, attempts=1, unstable=False).stats().unstable  # load unknown
