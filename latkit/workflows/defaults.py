"""The search's defaults and limits that `latkit search --help` shows, apart from the search itself
so that the help (and every other command's start-up) does not wait for torch to import.

What decides a `SearchConfig` is defined in `latkit.search.defaults` (the search reads it too) and
handed on here; what only a whole run has (space, data, final training, rounds) and the command
line's limits are defined here."""

from __future__ import annotations

import os

from latkit.search.defaults import (
    ARCH_LR,
    BATCH_SIZE,
    EPOCHS,
    LOSS,
    MODE,
    STRATEGY,
    WARMUP_EPOCHS,
)

__all__ = [
    "ARCH_LR",
    "BATCH_SIZE",
    "DATASET",
    "EPOCHS",
    "FINAL_EPOCHS",
    "LOSS",
    "MAX_ARCH_LR",
    "MAX_BATCH",
    "MAX_EPOCHS",
    "MAX_NETWORKS",
    "MAX_NPROC",
    "MAX_ROUNDS",
    "MAX_SEED",
    "MODE",
    "QUICKSTART_FINAL_EPOCHS",
    "ROUNDS",
    "SPACE",
    "STRATEGY",
    "WARMUP_EPOCHS",
    "free_cores",
    "usable_cores",
]

#: the space and the data a search runs on unless told otherwise
SPACE = "proxyless-tiny"
DATASET = "digits"
#: epochs to train the found network from scratch (`latkit quickstart`: fewer, to stay quick)
FINAL_EPOCHS = 5
QUICKSTART_FINAL_EPOCHS = 4
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
