"""The records every measurement carries: where it was measured, and its statistics.

Timing produces them and the store persists them; keeping them here means the timing loop never
imports persistence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from latkit.ops import OpSpec

STAT_FIELDS = (
    "median_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "p10_ms",
    "p90_ms",
    "cv",
    "runs",
    "block",
    "exact",
    "attempts",
    "unstable",
)
#: the statistics stored as 0/1 integers (the same column type in SQLite and PostgreSQL)
FLAG_FIELDS = ("exact", "unstable")
#: how busy the machine was while the row was timed (NaN: unknown, e.g. a phone's or an old row)
LOAD_FIELDS = ("busy_cores", "steal", "waited")


@dataclass(frozen=True)
class Environment:
    """Where and how a number was measured. The fingerprint (`env_id`) covers what changes the
    number: `extra` and the timing plan (`timing`) are part of it, `info` (clocks, temperatures,
    serials) is recorded but not keyed. Imported rows have no timing plan."""

    runtime: str
    runtime_version: str
    threads: int
    batch: int
    host: str
    device_model: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    info: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    timing: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def env_id(self) -> str:
        fields: list[Any] = [
            self.runtime,
            self.runtime_version,
            self.threads,
            self.batch,
            self.host,
            self.device_model,
            sorted(self.extra.items()),
        ]
        if self.timing:  # absent for imported rows, whose fingerprints stay as they were
            fields.append(sorted(self.timing.items()))
        payload = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def timed_with(self, plan: dict[str, Any]) -> Environment:
        """This environment with the timing plan its numbers were taken with."""
        return dataclasses.replace(self, timing=dict(plan))

    def columns(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "threads": self.threads,
            "batch": self.batch,
            "host": self.host,
            "device_model": self.device_model,
            "env_id": self.env_id,
            "env_json": json.dumps({**self.extra, **self.info}, sort_keys=True, default=str),
            "timing": json.dumps(self.timing, sort_keys=True) if self.timing else None,
        }


@dataclass(frozen=True)
class Stats:
    """The summary statistics every row carries, and what they were computed from.

    `exact` rows come from raw per-sample times: p10/p90 are empirical percentiles and `cv` is
    the spread of the rounds' medians. Other rows were derived from summaries (benchmark_model's
    per-run count/avg/std/min/max, an imported table's mean/std): statistics a summary cannot
    give are NaN, and `cv` is the spread of the rounds' averages. `runs` counts timed samples,
    each a block of `block` calls whose per-call time is reported. `attempts` is how many times
    the op was measured (retries pool their rounds). `unstable` marks a `cv` still above the
    plan's `max_cv` after every retry, or a row timed while the machine was contended.
    `busy_cores` is the CPU time other processes used meanwhile, in cores, `steal` the share of
    CPU time the hypervisor took, and `waited` the share of the time the timing thread waited
    for a core (all NaN where unknown: see `latkit.profilers.load`).
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p10_ms: float
    p90_ms: float
    cv: float
    runs: int
    block: int = 1
    exact: bool = False
    attempts: int = 1
    unstable: bool = False
    #: context, not statistics: left out of equality (NaN, unknown, never equals itself)
    busy_cores: float = field(default=math.nan, compare=False)
    steal: float = field(default=math.nan, compare=False)
    waited: float = field(default=math.nan, compare=False)

    def columns(self) -> dict[str, Any]:
        """The row as stored: flags as 0/1, an unknown load as NULL (not NaN, which PostgreSQL
        would sort above every number)."""
        row = dataclasses.asdict(self)
        for name in FLAG_FIELDS:
            row[name] = int(row[name])
        for name in LOAD_FIELDS:
            row[name] = None if math.isnan(row[name]) else float(row[name])
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Stats:
        """Statistics read back from a store row (NULL reads as NaN, flags as booleans)."""
        values = {name: row.get(name) for name in (*STAT_FIELDS, *LOAD_FIELDS)}
        for name in (*STAT_FIELDS[:8], *LOAD_FIELDS):
            values[name] = float("nan") if values[name] is None else float(values[name])
        values["runs"] = int(values["runs"] or 0)
        values["block"] = int(values["block"] or 1)
        values["attempts"] = int(values["attempts"] or 1)
        for name in FLAG_FIELDS:
            values[name] = bool(values[name])
        return cls(**values)


def arch_id(ops: Iterable[OpSpec]) -> str:
    """A stable id for a whole network: the hash of its op keys in order."""
    return hashlib.sha256("|".join(op.key for op in ops).encode()).hexdigest()[:16]
