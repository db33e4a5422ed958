"""How busy the machine is while latkit times: the /proc probe, what counts as contended, and a
real onnxruntime profile beside real spinning processes (no figure asserted beyond "more")."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from latkit.devices import parse_device
from latkit.profilers import ProfilerOptions, get_profiler
from latkit.profilers.load import (
    MIN_WINDOW_S,
    Load,
    LoadProbe,
    between,
    contended,
    core_count,
    read,
)
from latkit.profilers.session import profile_ops
from latkit.spaces import load_space
from latkit.store import MeasurementStore

linux = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
#: a spinner ends itself after this long even if the test never gets to kill it
SPIN_S = 120


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@contextmanager
def spinners(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPU (bounded: each stops itself after `SPIN_S`)."""
    code = f"import time\nend = time.time() + {SPIN_S}\nwhile time.time() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    try:
        time.sleep(1.0)  # let them start and spread over the cores
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=30)


class Notes:
    """A reporter that keeps its notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def task(self, description: str, total: float | None):
        return lambda amount=1.0: None

    def note(self, text: str, level: str = "info") -> None:
        self.notes.append(text)


@linux
def test_the_probe_reads_sane_figures_on_this_machine():
    before = read()
    assert before is not None and before.cores == core_count() and before.running >= 1
    probe = LoadProbe()
    probe.before()
    _spin(2 * MIN_WINDOW_S)
    load = probe.after()
    assert load.known and load.cores == core_count()
    assert 0.0 <= load.busy_cores <= load.cores
    assert 0.0 <= load.steal <= 1.0 and load.running >= 1
    assert "of" in load.describe() and str(load.cores) in load.describe()


@linux
def test_a_short_stretch_is_read_over_a_window_long_enough_to_tell():
    first, second = read(), read()
    too_short = between(first, second)  # a few microseconds: 10 ms counts cannot say
    assert not too_short.known and not too_short.contended and too_short.cores == core_count()
    probe = LoadProbe()
    probe.before()
    time.sleep(MIN_WINDOW_S)
    assert probe.after().known  # long enough by itself
    probe.before()
    load = probe.after()  # a few microseconds: read back over the earlier stretch
    assert load.known and 0.0 <= load.busy_cores <= load.cores
    assert 0.0 <= load.waited <= 1.0  # the run-queue wait is exact over any stretch


def test_without_proc_every_figure_is_unknown(tmp_path):
    assert read(path=str(tmp_path / "no-such-stat")) is None
    load = between(None, None)
    assert not load.known and math.isnan(load.steal) and not load.contended
    assert load.describe() == "load unknown"


def test_contended_means_kept_off_the_core_or_time_stolen():
    # what others took from the timing thread: its wait for a core, as a share of the stretch
    assert not contended(0.01, 0.0) and contended(0.2, 0.0)
    assert contended(0.0, 0.08) and not contended(0.0, 0.02)  # the hypervisor's share
    assert not contended(math.nan, math.nan)  # unknown never counts
    # busy neighbours alone are not contention: on other cores they take nothing from it
    assert not Load(1.9, 0.0, 3.0, 2, waited=0.0).contended
    assert Load(1.9, 0.0, 3.0, 2, waited=0.3).contended


def test_contention_is_said_once_when_it_starts_not_once_per_stretch(tmp_path):
    device = parse_device({"name": "cpu", "kind": "cpu", "runtime": "onnxruntime"}, "d.yaml")
    reporter = Notes()
    profiler = get_profiler(device, ProfilerOptions(reporter=reporter))
    busy, quiet = Load(1.9, 0.0, 4.0, 2, 0.4), Load(0.1, 0.0, 1.0, 2, 0.0)
    for load in (quiet, busy, busy, Load(), busy, quiet, busy):
        profiler.watch_load(load)
    profiler.close()
    assert len(reporter.notes) == 2  # at the first busy stretch, and again after a quiet one
    assert reporter.notes[0].startswith("machine busy: the profiler waited for a core 40%")
    assert "--only-unstable" in reporter.notes[0]


def _profile(tmp_path, name: str, reporter: Notes) -> list[dict]:
    """A real onnxruntime profile of the first 8 ops of proxyless-tiny into a fresh store: one
    chunk, long enough (about a second) for /proc/stat's ticks to tell."""
    timing = {"warmup": 2, "runs": 10, "rounds": 2, "max_cv": 10.0, "max_retries": 0}
    timing["min_block_ms"] = 5.0  # samples of 5 ms: the chunk spans /proc/stat's window
    device = parse_device(
        {"name": name, "kind": "cpu", "runtime": "onnxruntime", "threads": 1, "timing": timing},
        f"{name}.yaml",
    )
    ops = load_space("proxyless-tiny").distinct_ops()[:8]
    with MeasurementStore(tmp_path / f"{name}.sqlite") as store:
        profiler = get_profiler(device, ProfilerOptions(reporter=reporter))
        try:
            summary = profile_ops(profiler, ops, store)
        finally:
            profiler.close()
        frame = store.dataframe(name)
    assert summary.rows == len(frame) == len(ops)
    return frame.to_dict("records")


@linux
def test_spinners_on_every_core_raise_busy_cores_and_flag_the_rows(tmp_path):
    cores = core_count()
    quiet = _profile(tmp_path, "quiet", Notes())
    reporter = Notes()
    with spinners(2 * cores):
        loaded = _profile(tmp_path, "loaded", reporter)
    for rows in (quiet, loaded):  # a contended row is always flagged, whatever else ran
        for row in rows:
            if contended(row["waited"], row["steal"]):
                assert row["unstable"]
    quiet_busy = statistics.median(r["busy_cores"] for r in quiet)
    loaded_busy = statistics.median(r["busy_cores"] for r in loaded)
    assert loaded_busy > quiet_busy
    assert all(r["unstable"] and contended(r["waited"], r["steal"]) for r in loaded)
    busy_notes = [n for n in reporter.notes if n.startswith("machine busy")]
    assert len(busy_notes) == 1  # said when it started, not once per op
