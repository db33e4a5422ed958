"""What every profiler offers: load ops, time them with the shared loop, describe its environment."""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from latkit.devices import DeviceConfig
from latkit.ops import OpSpec
from latkit.spaces import Network
from latkit.store import Environment, Stats
from profilers.timing import Clock, HostClock, Measurement, Runner, TimingPlan, measure_interleaved

CHUNK = 8


@dataclass(frozen=True)
class MeasuredOp:
    """One finished op (or network): its statistics, the time spent timing it, the temperature."""

    op: OpSpec | None
    stats: Stats
    timed_s: float
    temperature_c: float | None = None

    @classmethod
    def from_measurement(
        cls, op: OpSpec | None, m: Measurement, temperature_c: float | None = None
    ) -> MeasuredOp:
        return cls(op, m.stats(), m.timed_s, temperature_c)


@cache
def host_model() -> str:
    """The CPU model, which is what latency depends on (hostnames change, CPUs don't)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Profiler(ABC):
    """Times ops and whole networks on one device, as its device file describes."""

    #: what results are labelled with when they are not from the named hardware
    label: str = ""

    def __init__(self, device: DeviceConfig) -> None:
        self.device = device
        t = device.timing
        self.plan = TimingPlan(t.warmup, t.runs, t.rounds, t.max_cv, t.max_retries)

    @property
    def clock(self) -> Clock:
        return HostClock()

    @abstractmethod
    def environment(self) -> Environment:
        """Runtime, version, threads, batch and host: the fingerprint rows are keyed by."""

    @abstractmethod
    def load(self, ops: Sequence[OpSpec]) -> Runner:
        """Build the chain of `ops` as one model and return a callable that runs it once."""

    def prepare(self, ops: Sequence[OpSpec]) -> list[OpSpec]:
        """The ops at this device's batch size."""
        return [op.replace(batch=self.device.batch_size) for op in ops]

    def measure(
        self,
        ops: Sequence[OpSpec],
        on_measured: Callable[[MeasuredOp], None],
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        """Time `ops` in chunks, interleaving rounds inside each chunk; report each op when done."""
        step = 1.0 / max(1, self.plan.rounds)

        def tick(_index: int) -> None:
            if on_progress:
                on_progress(step)

        for start in range(0, len(ops), CHUNK):
            chunk = ops[start : start + CHUNK]
            runners = [self.load([op]) for op in chunk]
            results = measure_interleaved(runners, self.clock, self.plan, on_round=tick)
            for op, m in zip(chunk, results):
                on_measured(MeasuredOp.from_measurement(op, m))
            del runners

    def measure_network(self, network: Network) -> MeasuredOp:
        """Time a whole network end to end with the same loop."""
        ops = self.prepare(network.ops)
        (m,) = measure_interleaved([self.load(ops)], self.clock, self.plan)
        return MeasuredOp.from_measurement(None, m)

    def close(self) -> None:
        """Release device connections; local profilers hold none."""
