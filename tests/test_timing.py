"""The shared timing loop: warm-up, rounds interleaved, statistics, synchronisation."""

from __future__ import annotations

import numpy as np
import pytest

from latkit.devices import Timing
from latkit.profilers.timing import (
    HostClock,
    Measurement,
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


def test_rounds_are_interleaved_across_ops():
    dev = FakeClockDevice()
    clock = HostClock(synchronize=dev.sync, now=dev.now)
    plan = Timing(warmup=1, runs=2, rounds=3, max_cv=1.0)
    measure_interleaved([dev.launch("a"), dev.launch("b")], clock, plan)
    order = [e for e in dev.log if e.startswith("run")]
    # each round runs a (warmup + 2), then b (warmup + 2), three times over
    assert order == (["run:a"] * 3 + ["run:b"] * 3) * 3


def test_unstable_op_is_remeasured_and_best_rounds_kept():
    calls = {"a": 0}
    state = {"t": 0.0}
    # op a: first 3 rounds wildly different, later rounds stable
    durations = iter([1, 5, 25] + [2] * 100)

    def run() -> None:
        calls["a"] += 1
        state["t"] += next(durations) / 1000

    clock = HostClock(now=lambda: state["t"])
    plan = Timing(warmup=0, runs=1, rounds=3, max_cv=0.05, max_retries=2)
    (m,) = measure_interleaved([run], clock, plan)
    assert calls["a"] == 6
    assert m.cv == pytest.approx(0.0)
    assert m.median == pytest.approx(2.0)


def test_measurement_statistics():
    m = Measurement(((1.0, 2.0, 3.0, 4.0), (2.0, 2.0, 2.0, 2.0)))
    s = m.stats()
    assert s.runs == 8 and s.min_ms == 1.0 and s.max_ms == 4.0
    assert s.median_ms == pytest.approx(2.0) and s.mean_ms == pytest.approx(2.25)
    assert s.p10_ms == pytest.approx(np.percentile(m.times, 10))
    assert m.cv == pytest.approx(np.std([2.5, 2.0], ddof=1) / 2.25)
    assert m.timed_s == pytest.approx(0.018)
