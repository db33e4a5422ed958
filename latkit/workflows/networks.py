"""Whole networks timed end to end, beside the sum of their separately measured ops.

The gap between the two is what a per-op latency table cannot see (fusion, caches, per-call
overhead); `latkit fit --networks` learns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from latkit.profilers.base import Profiler
from latkit.profilers.session import profile_ops, time_network
from latkit.reporting import SilentReporter
from latkit.spaces import Network
from latkit.store import MeasurementStore


@dataclass(frozen=True)
class NetworkTiming:
    network: str
    measured_ms: float
    cv: float
    sum_of_ops_ms: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "network": self.network,
            "measured_ms": self.measured_ms,
            "cv": self.cv,
            "sum_of_ops_ms": self.sum_of_ops_ms,
        }


def time_networks(
    profiler: Profiler,
    store: MeasurementStore,
    networks: Sequence[Network],
    *,
    with_ops: bool = True,
) -> list[NetworkTiming]:
    """Time each network afresh (stored with origin `time-network`) and, with `with_ops`,
    profile its ops (reusing stored ones) to report their sum."""
    reporter = profiler.options.reporter
    advance = reporter.task("networks", len(networks))
    rows = []
    env_id = profiler.environment().env_id
    for network in networks:
        stats = time_network(profiler, store, network, origin="time-network", reuse=False)
        op_sum = None
        if with_ops:
            timed = [op for op in network.ops if op.type != "zero"]
            profile_ops(profiler, timed, store, reporter=SilentReporter())
            frame = store.dataframe(profiler.device.name, env_id).set_index("key")
            keys = [op.key for op in profiler.prepare(timed)]
            op_sum = float(frame.loc[keys, "median_ms"].sum())
        rows.append(NetworkTiming(network.name, stats.median_ms, stats.cv, op_sum))
        advance(1)
    return rows
