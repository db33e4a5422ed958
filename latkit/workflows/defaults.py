"""The search's defaults and limits that `latkit search --help` shows, apart from the search itself
so that the help (and every other command's start-up) does not wait for torch to import."""

from __future__ import annotations

import os

#: ProxylessNAS moves α with lr 1e-3 over ~10^5 ImageNet arch steps; digits gives ~10^2, so
#: searches started from the command line default to a larger step.
ARCH_LR = 0.03
#: the target-seeking loss (`latkit.search.losses`); ProxylessNAS's own are `add-linear` and
#: `mul-log`
LOSS = "lagrangian"
#: the most derive-and-time rounds of the closed loop
ROUNDS = 3

# Limits of the search's numeric options: past them a run is a typo, not an experiment, and is
# refused before anything is trained, built or stored.
#: most epochs of any kind (search, warm-up, final training)
MAX_EPOCHS = 10_000
#: largest (global) batch
MAX_BATCH = 65_536
#: most derive-and-time rounds
MAX_ROUNDS = 100
#: most data-parallel processes on one machine (one per GPU, or a share of the cores)
MAX_NPROC = 256
#: most whole networks `latkit quickstart` validates F on
MAX_NETWORKS = 10_000
#: largest learning rate of α (Adam steps of this size already saturate a softmax)
MAX_ARCH_LR = 10.0
#: largest seed (numpy's generators take 32 bits)
MAX_SEED = 2**32 - 1


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity masks
        return os.cpu_count() or 1


def free_cores() -> tuple[int, int, float]:
    """(threads, usable cores, 1-minute load average): the usable cores minus those the load
    average says are busy, at least 1. Training on cores other processes use only slows every
    process down (torch's default takes them all)."""
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this system
        load = 0.0
    return min(cores, max(1, round(cores - load))), cores, load
