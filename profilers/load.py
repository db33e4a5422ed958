"""How busy this machine was while a stretch of ops was timed, read from /proc (Linux).

Why it is measured: simple neighbours barely move latkit's timings (a process spinning on the
other core, or streaming memory, leave the profiler its own core), but oversubscription does: a
package install beside a multi-threaded training job on the same 2 cores gave a median CV of
6.5% and 40 of 70 ops unstable. What tells the two apart is whether others left a core free for
the profiler, so each timed stretch records

- `busy_cores`: CPU time other processes used, in cores: (the busy jiffies of the cores this
  process may run on, less this process's own CPU time) / wall time;
- `steal`: the share of those cores' time the hypervisor gave to other guests;
- `running`: runnable threads (`procs_running`, this one included), the mean of the two reads.

- `waited`: the share of the stretch the timing thread spent runnable but waiting for a core
  (its run-queue wait, /proc/thread-self/schedstat): what others actually took from it.

A stretch is `contended` when the timing thread waited for a core more than `MAX_WAIT` of the
time, or the hypervisor stole more than `MAX_STEAL`. Measured on this machine, how busy the
others were says little by itself: with other processes using 1.3-1.9 of 2 cores, spinning,
training or installing beside it, proxyless-mobile's ops stayed within 1-1.4% median of their
medians (bench/busy.py); what moves a timing is being kept off the core, which `waited` sees. Where /proc is missing, every figure is unknown (NaN)
and nothing is contended.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

UNKNOWN = float("nan")
#: the share of a stretch the timing thread may wait for a core before it is contended
MAX_WAIT = 0.05
#: the share of CPU time the hypervisor may steal before a row is contended
MAX_STEAL = 0.05
#: the shortest window read: /proc/stat counts in 10 ms units, so over a shorter window one
#: count more or less on a core would move `busy_cores` by a good part of `FREE_CORE_MARGIN`
MIN_WINDOW_S = 0.25
#: how far back a short stretch's window may reach (`LoadProbe`)
LOOKBACK_S = 1.0
PROC_STAT = "/proc/stat"
SCHEDSTAT = "/proc/thread-self/schedstat"


def contended(waited: float, steal: float) -> bool:
    """Whether the timing thread was kept off its core, or the hypervisor stole too much
    (unknown figures, NaN, never count)."""
    return bool(waited > MAX_WAIT or steal > MAX_STEAL)


@dataclass(frozen=True)
class Load:
    """What others did with the machine during one timed stretch (NaN: unknown)."""

    busy_cores: float = UNKNOWN
    steal: float = UNKNOWN
    running: float = UNKNOWN
    cores: int = 0
    waited: float = UNKNOWN

    @property
    def known(self) -> bool:
        return not math.isnan(self.busy_cores)

    @property
    def contended(self) -> bool:
        return contended(self.waited, self.steal)

    def describe(self) -> str:
        """What made it busy, in words: e.g. "other processes used 1.9 of 2 cores"."""
        parts = []
        if self.waited > MAX_WAIT:
            parts.append(f"the profiler waited for a core {self.waited:.0%} of the time")
        if not math.isnan(self.busy_cores):
            parts.append(f"other processes used {self.busy_cores:.1f} of {self.cores} cores")
        if self.steal > MAX_STEAL:
            parts.append(f"the hypervisor stole {self.steal:.0%} of the CPU time")
        return ", ".join(parts) or "load unknown"


@dataclass(frozen=True)
class Reading:
    """One read of the counters: seconds of wall and CPU time, and jiffies converted to s."""

    wall_s: float
    own_s: float
    busy_s: float
    total_s: float
    steal_s: float
    running: int
    cores: int
    wait_s: float


def watched_cores() -> set[int] | None:
    """The cores this thread may run on (None where the OS does not say: every core)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        return set(os.sched_getaffinity(0))
    except OSError:
        return None


def core_count() -> int:
    """How many cores a `LoadProbe` created now would watch."""
    cores = watched_cores()
    return len(cores) if cores else os.cpu_count() or 1


def read(cores: set[int] | None = None, path: str = PROC_STAT) -> Reading | None:
    """The counters now, summed over `cores` (every core when None); None without /proc."""
    wall, own = time.monotonic(), time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = total = steal = 0
    seen, running = 0, 0
    try:
        with open(path) as f:
            for line in f:
                name, *fields = line.split()
                if name == "procs_running":
                    running = int(fields[0])
                elif name.startswith("cpu") and name[3:].isdigit():
                    if cores is not None and int(name[3:]) not in cores:
                        continue
                    # user nice system idle iowait irq softirq steal (guest is inside user)
                    user, nice, system, idle, iowait, irq, softirq, stolen = map(int, fields[:8])
                    busy += user + nice + system + irq + softirq
                    total += user + nice + system + idle + iowait + irq + softirq + stolen
                    steal += stolen
                    seen += 1
    except (OSError, ValueError, IndexError):
        return None
    if not seen:
        return None
    return Reading(wall, own, busy / tick, total / tick, steal / tick, running, seen, _wait_s())


def _wait_s() -> float:
    """Seconds this thread has spent runnable but waiting for a core (NaN where unknown)."""
    try:
        with open(SCHEDSTAT) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return UNKNOWN


def between(before: Reading | None, after: Reading | None) -> Load:
    """The load of the stretch between two reads (unknown when either is missing, or when the
    window is too short for /proc/stat's 10 ms counts to say: `MIN_WINDOW_S`)."""
    if before is None or after is None:
        return Load()
    wall = after.wall_s - before.wall_s
    running = (before.running + after.running) / 2
    if wall < MIN_WINDOW_S:
        return Load(running=running, cores=after.cores)
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    total = after.total_s - before.total_s
    steal = (after.steal_s - before.steal_s) / total if total > 0 else UNKNOWN
    busy = min(max(others / wall, 0.0), float(after.cores))
    waited = min(max((after.wait_s - before.wait_s) / wall, 0.0), 1.0)
    return Load(busy, steal, running, after.cores, waited)


#: recent readings per watched core set, oldest first (see `LoadProbe.after`)
_history: dict[frozenset[int] | None, list[Reading]] = {}


class LoadProbe:
    """Reads the counters before and after a timed stretch. Create it before pinning the
    thread to one core: it watches every core the process may use, as found on creation.

    The run-queue wait is counted in nanoseconds, so it is exact over any stretch. The /proc/stat
    figures count in 10 ms ticks: a stretch shorter than `MIN_WINDOW_S` (a chunk of microsecond
    ops can take 50 ms) reads them from an earlier reading, at most `LOOKBACK_S` before the
    stretch began, far enough back to span `MIN_WINDOW_S`; with none, they stay unknown. It
    never sleeps to lengthen a window: an idle core clocks down, and the next stretch would be
    timed on a slower core."""

    def __init__(self) -> None:
        self.cores = watched_cores()
        self._key = None if self.cores is None else frozenset(self.cores)
        self._before: Reading | None = None

    def before(self) -> None:
        self._before = read(self.cores)

    def after(self) -> Load:
        start, end = self._before, read(self.cores)
        load = between(self._window_start(start, end), end)
        if start is None or end is None or end.wall_s <= start.wall_s:
            return load
        waited = (end.wait_s - start.wait_s) / (end.wall_s - start.wall_s)
        return dataclasses.replace(load, waited=min(max(waited, 0.0), 1.0))

    def _window_start(self, start: Reading | None, end: Reading | None) -> Reading | None:
        """Where the /proc/stat window begins: the stretch's start, or for a short stretch the
        latest recent reading far enough back (both kept for later stretches)."""
        if start is None or end is None:
            return start
        history = [r for r in _history.get(self._key, []) if r.wall_s >= start.wall_s - LOOKBACK_S]
        _history[self._key] = [*history, start, end][-64:]
        if end.wall_s - start.wall_s >= MIN_WINDOW_S:
            return start
        early = [r for r in history if r.wall_s <= end.wall_s - MIN_WINDOW_S]
        return early[-1] if early else start
