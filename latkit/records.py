"""The records every measurement carries: where it was measured, and its statistics.

Timing produces them and the store persists them; keeping them here means the timing loop never
imports persistence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
)


@dataclass(frozen=True)
class Environment:
    """Where a number was measured. The fingerprint (`env_id`) covers what changes latency:
    `extra` is part of it, `info` (clocks, temperatures, serials) is recorded but not keyed."""

    runtime: str
    runtime_version: str
    threads: int
    batch: int
    host: str
    device_model: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    info: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def env_id(self) -> str:
        payload = json.dumps(
            [
                self.runtime,
                self.runtime_version,
                self.threads,
                self.batch,
                self.host,
                self.device_model,
                sorted(self.extra.items()),
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

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
        }


@dataclass(frozen=True)
class Stats:
    """The summary statistics every row carries, whatever produced them."""

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p10_ms: float
    p90_ms: float
    cv: float
    runs: int

    def columns(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def arch_id(ops: Iterable[OpSpec]) -> str:
    """A stable id for a whole network: the hash of its op keys in order."""
    return hashlib.sha256("|".join(op.key for op in ops).encode()).hexdigest()[:16]
