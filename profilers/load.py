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

A stretch is `contended` when others took more than every other core and part of the
profiler's own (`busy_cores` above cores − 1 + `FREE_CORE_MARGIN`): one neighbour on the other
core of a 2-core machine is not contention, a second one is. Or when the hypervisor stole more
than `MAX_STEAL` of the time. Where /proc is missing, every figure is unknown (NaN)
and nothing is contended.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

UNKNOWN = float("nan")
#: how much of the profiler's own core others may take (beyond every other core) before a
#: stretch is contended
FREE_CORE_MARGIN = 0.25
#: the share of CPU time the hypervisor may steal before a row is contended
MAX_STEAL = 0.05
#: the shortest window read: /proc/stat counts in 10 ms units, so over a shorter window one
#: count more or less on a core would move `busy_cores` by a good part of `FREE_CORE_MARGIN`
MIN_WINDOW_S = 0.25
#: how far back a short stretch's window may reach (`LoadProbe`)
LOOKBACK_S = 1.0
PROC_STAT = "/proc/stat"


def contended(busy_cores: float, steal: float, cores: int) -> bool:
    """Whether others took every other core and part of the profiler's, or the hypervisor
    stole too much (unknown figures, NaN, never count)."""
    limit = cores - 1 + FREE_CORE_MARGIN
    return bool((cores > 0 and busy_cores > limit) or steal > MAX_STEAL)


@dataclass(frozen=True)
class Load:
    """What others did with the machine during one timed stretch (NaN: unknown)."""

    busy_cores: float = UNKNOWN
    steal: float = UNKNOWN
    running: float = UNKNOWN
    cores: int = 0

    @property
    def known(self) -> bool:
        return not math.isnan(self.busy_cores)

    @property
    def contended(self) -> bool:
        return contended(self.busy_cores, self.steal, self.cores)

    def describe(self) -> str:
        """What made it busy, in words: e.g. "other processes used 1.9 of 2 cores"."""
        parts = []
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
    return Reading(wall, own, busy / tick, total / tick, steal / tick, running, seen)


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
    return Load(busy, steal, running, after.cores)


#: the last reading each watched core set ended a stretch with (see `LoadProbe.after`)
_last_end: dict[frozenset[int] | None, Reading] = {}


class LoadProbe:
    """Reads the counters before and after a timed stretch. Create it before pinning the
    thread to one core: it watches every core the process may use, as found on creation.

    A stretch shorter than `MIN_WINDOW_S` (a chunk of microsecond ops can take 50 ms) is read
    over a longer window: back to where the previous stretch's window ended, if that was at most
    `LOOKBACK_S` ago (the time between is the profiler loading ops, its own CPU time, which is
    left out), and forward by sleeping for what is still missing."""

    def __init__(self) -> None:
        self.cores = watched_cores()
        self._key = None if self.cores is None else frozenset(self.cores)
        self._before: Reading | None = None

    def before(self) -> None:
        self._before = read(self.cores)

    def after(self) -> Load:
        start, end = self._before, read(self.cores)
        if start is not None and end is not None and end.wall_s - start.wall_s < MIN_WINDOW_S:
            last = _last_end.get(self._key)
            if last is not None and start.wall_s - LOOKBACK_S <= last.wall_s <= start.wall_s:
                start = last
            missing = MIN_WINDOW_S - (end.wall_s - start.wall_s)
            if missing > 0:
                time.sleep(missing)
                end = read(self.cores)
        if end is not None:
            _last_end[self._key] = end
        return between(start, end)
