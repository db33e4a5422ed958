"""What every profiler offers, and the shared way local runtimes time ops and networks."""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from latkit.devices import DeviceConfig
from latkit.ops import OpSpec
from latkit.profilers.load import Load
from latkit.profilers.timing import Clock, HostClock, Outcome, Runner, measure_interleaved
from latkit.records import Environment, Stats
from latkit.reporting import Reporter, SilentReporter
from latkit.spaces import Network

CHUNK = 8


@dataclass(frozen=True)
class ProfilerOptions:
    """How a profiler runs beyond what the device file says: who watches its progress, and, for
    phones, where raw tool output is kept and whether pushed files stay on the device."""

    reporter: Reporter = field(default_factory=SilentReporter)
    keep_files: bool = False
    raw_dir: Path = Path("data/raw")


@dataclass(frozen=True)
class MeasuredOp:
    """One finished op (or network): its statistics, the time spent timing it, the temperature."""

    op: OpSpec | None
    stats: Stats
    timed_s: float
    temperature_c: float | None = None

    @classmethod
    def from_outcome(
        cls, op: OpSpec | None, outcome: Outcome, temperature_c: float | None = None
    ) -> MeasuredOp:
        return cls(op, outcome.stats(), outcome.timed_s, temperature_c)


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
    #: whether the last timed stretch whose load was known found the machine contended
    contended: bool = False

    def __init__(self, device: DeviceConfig, options: ProfilerOptions | None = None) -> None:
        self.device = device
        self.options = options or ProfilerOptions()
        self.plan = device.timing

    @abstractmethod
    def runtime_environment(self) -> Environment:
        """Runtime, version, threads, batch and host of this profiler."""

    def environment(self) -> Environment:
        """The fingerprint rows are keyed by: the runtime's environment and the timing plan."""
        return self.runtime_environment().timed_with(self.plan.model_dump())

    @abstractmethod
    def measure(
        self,
        ops: Sequence[OpSpec],
        on_measured: Callable[[MeasuredOp], None],
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        """Time `ops`, calling `on_measured` as each finishes and `on_progress` with the share
        of an op done since the last call."""

    @abstractmethod
    def measure_network(self, network: Network) -> MeasuredOp:
        """Time a whole network end to end."""

    def watch_load(self, load: Load) -> None:
        """Say so when contention starts, once, not once per op: the user learns while it
        happens why rows are flagged, and what to do about it."""
        if not load.known:
            return
        if load.contended and not self.contended:
            self.options.reporter.note(
                f"machine busy: {load.describe()}; timings taken now are flagged unstable; "
                "rerun with --only-unstable when it is quiet",
                "warning",
            )
        self.contended = load.contended

    def prepare(self, ops: Sequence[OpSpec]) -> list[OpSpec]:
        """The ops at this device's batch size."""
        return [op.replace(batch=self.device.batch_size) for op in ops]

    def close(self) -> None:
        """Release device connections; local profilers hold none."""


class LocalProfiler(Profiler):
    """A runtime on this host: each op or network loads into a callable that the shared
    interleaved loop times."""

    @property
    def clock(self) -> Clock:
        return HostClock()

    @property
    def pinned(self) -> bool:
        """Whether timing pins the thread to one core: a single-threaded CPU runtime runs in
        the timing thread alone (more threads would be squeezed onto the one core)."""
        return self.device.kind == "cpu" and self.device.threads == 1

    @abstractmethod
    def load(self, ops: Sequence[OpSpec]) -> Runner:
        """Build the chain of `ops` as one model and return a callable that runs it once."""

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
            outcomes = measure_interleaved(
                runners, self.clock, self.plan, on_op_round=tick, pin=self.pinned
            )
            self.watch_load(outcomes[0].load)
            for op, outcome in zip(chunk, outcomes):
                on_measured(MeasuredOp.from_outcome(op, outcome))
            del runners

    def measure_network(self, network: Network) -> MeasuredOp:
        """Time a whole network end to end with the same loop."""
        ops = self.prepare(network.ops)
        (outcome,) = measure_interleaved([self.load(ops)], self.clock, self.plan, pin=self.pinned)
        self.watch_load(outcome.load)
        return MeasuredOp.from_outcome(None, outcome)
