"""Profile ops on an Android phone with the stock `benchmark_model`, over ADB.

One session: connect by `transport`, read the phone's facts, push `benchmark_model` (again only
when its sha256 on the phone differs), then per batch of `batch_push` ops: write each op as
`.tflite`, push the batch, and run `taskset <mask> benchmark_model --graph=...` for every op,
`timing.rounds` times, interleaved across the batch so heat and drift spread over all ops.

Timing goes through the shared interleaved loop (`latkit.profilers.timing.interleave`): rounds
interleaved across the batch, unstable ops given more rounds that are pooled with the first ones,
and ops still unstable flagged. Every round is a new benchmark_model process that loads the op
again, so every round gets the full `warmup`, not the host's short re-warm.

Statistics are derived from benchmark_model's summary line per run (count, avg, std, min, max
and, on current builds, median), because it prints no raw times; rows say so (`exact` false).
Rounds are pooled exactly for mean and std; the median is the median of the rounds' medians (their
averages where a build prints none); p10/p90 are unknown (NaN), since a summary holds no
percentiles. CV is across rounds, as for every other profiler, but of the rounds' averages:
benchmark_model prints medians in whole microseconds, which would round the CV of a 50 µs op to
zero.

Heat: the temperature is read before every run. Above `max_temperature_c` the run waits, with a
visible message, polling until the phone is cool again, for at most `cooldown_s`; a phone that does
not cool stops the profile with a clear error (finished rows stay, `--resume` continues). It is read
again after every run: a run that ended hot is discarded and taken again after cooling, so no row
measured hot is ever stored, and each row keeps the hottest reading around its runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.profilers.android import EMULATED_LABEL
from latkit.profilers.android.connection import AdbError, Connection, connect
from latkit.profilers.android.device import (
    ABI_MACHINES,
    ELF_MACHINES,
    Phone,
    PhoneFacts,
    elf_machine,
)
from latkit.profilers.android.parser import BenchmarkParseError, RunStats, parse_benchmark_output
from latkit.profilers.base import MeasuredOp, Profiler, ProfilerOptions
from latkit.profilers.tflite_writer import export_tflite
from latkit.profilers.timing import Outcome, chunks, interleave
from latkit.records import Environment, Stats, arch_id
from latkit.spaces import Network

BENCHMARK = "benchmark_model"
#: benchmark_model flags per `delegate`
DELEGATE_FLAGS: dict[str, tuple[str, ...]] = {
    "cpu": ("--use_xnnpack=true",),
    "gpu": ("--use_gpu=true",),
    "nnapi": ("--use_nnapi=true",),
}
UNKNOWN = float("nan")
RUN_TIMEOUT_S = 900.0


def pooled_stats(runs: Sequence[RunStats]) -> Stats:
    """One row from several benchmark_model runs of one op (see the module docstring)."""
    total = sum(r.count for r in runs)
    mean = sum(r.count * r.avg_us for r in runs) / total
    var = sum(r.count * (r.std_us**2 + (r.avg_us - mean) ** 2) for r in runs) / total
    medians = [r.median_us if r.median_us is not None else r.avg_us for r in runs]
    averages = [r.avg_us for r in runs]
    cv = 0.0
    if len(averages) > 1 and statistics.fmean(averages) > 0:
        cv = statistics.stdev(averages) / statistics.fmean(averages)
    ms = 1e-3
    return Stats(
        median_ms=statistics.median(medians) * ms,
        mean_ms=mean * ms,
        std_ms=math.sqrt(var) * ms,
        min_ms=min(r.min_us for r in runs) * ms,
        max_ms=max(r.max_us for r in runs) * ms,
        p10_ms=UNKNOWN,
        p90_ms=UNKNOWN,
        cv=cv,
        runs=total,
        exact=False,
    )


@dataclass(frozen=True)
class SummaryRounds:
    """One op's benchmark_model runs, one per round, and the hottest reading around them."""

    runs: tuple[RunStats, ...]
    temperature_c: float | None

    @property
    def cv(self) -> float:
        return pooled_stats(self.runs).cv

    @property
    def timed_s(self) -> float:
        return timed_seconds(self.runs)

    def stats(self) -> Stats:
        return pooled_stats(self.runs)

    @classmethod
    def pool(cls, _index: int, rounds: Sequence[tuple[RunStats, float | None]]) -> SummaryRounds:
        temps = [t for _, t in rounds if t is not None]
        return cls(tuple(run for run, _ in rounds), max(temps) if temps else None)


def timed_seconds(runs: Sequence[RunStats]) -> float:
    return sum(r.count * r.avg_us for r in runs) / 1e6


def file_name(prefix: str, key: str) -> str:
    """A phone file name for an op or network: fixed alphabet, so it cannot carry shell syntax."""
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.tflite"


def safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:150]


class AndroidProfiler(Profiler):
    """`kind: android`, `runtime: litert`: the stock benchmark_model on a phone over ADB."""

    label = "android phone"
    #: seconds to wait for the user to accept the RSA prompt on the phone
    auth_timeout_s = 30.0
    #: seconds between temperature reads while cooling down
    poll_s = 2.0

    def __init__(self, device: DeviceConfig, options: ProfilerOptions | None = None) -> None:
        super().__init__(device, options)
        assert device.android is not None  # DeviceConfig guarantees it for kind android
        self.settings = device.android
        self.source = device.source or f"device {device.name}"
        self.reporter = self.options.reporter
        self.connection: Connection | None = None
        self.phone: Phone | None = None
        self.facts: PhoneFacts | None = None
        self.binary_sha = ""
        self._pushed: set[str] = set()
        self._temperature: float | None = None
        self._warned_no_temperature = False
        #: wall seconds per activity ("export", "push", "temperature", "benchmark_model"), so the
        #: overhead on top of the timed runs can be broken down (bench/android_emulated.py)
        self.spent: Counter[str] = Counter()

    @contextmanager
    def spending(self, activity: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent[activity] += time.perf_counter() - started

    # --- session ------------------------------------------------------------------------------

    def benchmark_binary(self) -> bytes:
        """The local benchmark_model named by the device file (relative to the file's folder)."""
        value = self.settings.benchmark_model
        if not value:
            raise LatkitError(
                f"{self.source}: android.benchmark_model is not set; download LiteRT's "
                "android_aarch64_benchmark_model (docs/guides/phone.md, 'Over USB') and give its path"
            )
        path = Path(os.path.expanduser(value))
        if not path.is_absolute() and self.device.source:
            path = Path(self.device.source).parent / path
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise LatkitError(
                f"{self.source}: android.benchmark_model {value} does not exist ({path}); "
                "download LiteRT's android_aarch64_benchmark_model (docs/guides/phone.md, 'Over USB')"
            ) from None
        except OSError as exc:
            raise LatkitError(
                f"{self.source}: cannot read android.benchmark_model {path} ({exc.strerror})"
            ) from None

    def ready(self) -> Phone:
        """Connect, read the phone, install benchmark_model: once per profiler."""
        if self.phone is not None:
            return self.phone
        binary = self.benchmark_binary()
        self.connection = connect(
            self.settings,
            self.source,
            auth_timeout_s=self.auth_timeout_s,
            on_prompt=lambda: self.reporter.note(
                "accept the 'Allow USB debugging?' prompt on the phone", "warning"
            ),
        )
        phone = Phone(self.connection, self.settings.remote_dir)
        self.facts = facts = phone.facts()
        machine = elf_machine(binary)
        abis = facts.props.get("ro.product.cpu.abilist", "").split(",") + [facts.abi]
        runnable = {ELF_MACHINES[ABI_MACHINES[a]] for a in abis if a in ABI_MACHINES}
        if machine is not None and runnable and machine not in runnable:
            raise LatkitError(
                f"{self.source}: android.benchmark_model is built for {machine} but the phone "
                f"({facts.model}) is {facts.abi}; download the benchmark_model for {facts.abi} "
                "(android_aarch64_benchmark_model for arm64-v8a)"
            )
        if facts.emulated:
            self.label = EMULATED_LABEL
        phone.prepare_dir()
        self.binary_sha = hashlib.sha256(binary).hexdigest()
        if not phone.up_to_date(BENCHMARK, binary):
            phone.push(BENCHMARK, binary, 0o755)
        self._pushed.add(BENCHMARK)
        chmod = phone.chmod(BENCHMARK)
        if chmod.exit_code not in (0, None):
            raise LatkitError(f"cannot chmod benchmark_model on the phone: {chmod.output.strip()}")
        self.phone = phone
        return phone

    def runtime_environment(self) -> Environment:
        self.ready()
        facts = self.facts
        assert facts is not None
        clocks = {c.cpu: c for c in facts.cpus}
        return Environment(
            runtime="litert",
            runtime_version=f"benchmark_model sha256:{self.binary_sha[:12]}",
            threads=self.device.threads,
            batch=self.device.batch_size,
            host=facts.soc or facts.board,
            device_model=facts.model,
            extra={
                "soc": facts.soc,
                "abi": facts.abi,
                "android": facts.android,
                "delegate": self.settings.delegate,
                "affinity": self.settings.cpu_affinity or "",
                "emulated": facts.emulated,
            },
            info={
                "serial": facts.serial,
                "board": facts.board,
                "sdk": facts.sdk,
                "transport": self.settings.transport,
                "cpu_max_khz": {c: clock.max_khz for c, clock in clocks.items()},
                "cpu_cur_khz": {c: clock.cur_khz for c, clock in clocks.items()},
                "governor": sorted({clock.governor for clock in clocks.values() if clock.governor}),
                "label": self.label,
            },
        )

    def close(self) -> None:
        """Remove what was pushed (unless `keep_files`) and drop the connection."""
        if self.phone is not None and not self.options.keep_files and self._pushed:
            try:
                self.phone.remove(*sorted(self._pushed))
                self._pushed.clear()
            except AdbError:
                pass  # the phone is gone; its files are in remote_dir for the next run
        if self.connection is not None:
            self.connection.close()
        self.connection = self.phone = None

    # --- heat ---------------------------------------------------------------------------------

    def temperature(self) -> float | None:
        assert self.phone is not None
        with self.spending("temperature"):
            value = self.phone.temperature()
        if value is None and not self._warned_no_temperature:
            self._warned_no_temperature = True
            self.reporter.note(
                "cannot read the phone's temperature; heat is not controlled", "warning"
            )
        return value

    def cool_down(self, current: float | None = None) -> float | None:
        """The temperature once it is at most max_temperature_c, waiting up to cooldown_s."""
        limit = self.settings.max_temperature_c
        temp = self.temperature() if current is None else current
        if temp is None or temp <= limit:
            return temp
        self.reporter.note(
            f"phone at {temp:.1f} °C, above max_temperature_c {limit:g} °C: pausing "
            f"until it cools (at most {self.settings.cooldown_s:g} s)",
            "warning",
        )
        deadline = time.monotonic() + self.settings.cooldown_s
        while temp is not None and temp > limit:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LatkitError(
                    f"the phone is still at {temp:.1f} °C after waiting cooldown_s="
                    f"{self.settings.cooldown_s:g} s (max_temperature_c {limit:g}); finished ops "
                    "are stored: let it cool, or raise max_temperature_c / cooldown_s in "
                    f"{self.source}, then run the same command again"
                )
            time.sleep(min(self.poll_s, left))
            temp = self.temperature()
        self.reporter.note(f"phone cooled to {temp:.1f} °C: measuring again", "success")
        return temp

    # --- running benchmark_model --------------------------------------------------------------

    def command(self, graph: str, runs: int, warmup: int) -> list[str]:
        phone = self.phone
        assert phone is not None
        argv = [
            phone.remote_path(BENCHMARK),
            f"--graph={graph}",
            f"--num_threads={self.device.threads}",
            f"--num_runs={runs}",
            f"--warmup_runs={warmup}",
            "--min_secs=0",
            "--warmup_min_secs=0",
            *DELEGATE_FLAGS[self.settings.delegate],
        ]
        if self.settings.cpu_affinity:
            argv = ["taskset", self.settings.cpu_affinity, *argv]
        return argv

    def save_raw(self, what: str, argv: Sequence[str], exit_code: int | None, output: str) -> Path:
        raw_dir = self.options.raw_dir
        raw_dir.mkdir(parents=True, exist_ok=True)
        path = raw_dir / f"{safe(self.device.name)}-{safe(what)}.txt"
        path.write_text(f"$ {' '.join(argv)}\n# exit status: {exit_code}\n{output}")
        return path

    def benchmark(self, graph: str, what: str, runs: int | None = None, warmup: int | None = None):
        """One benchmark_model run on the phone, parsed; failures name the saved raw output."""
        phone = self.phone
        assert phone is not None
        runs = self.plan.runs if runs is None else runs
        warmup = self.plan.warmup if warmup is None else warmup
        argv = self.command(graph, runs, warmup)
        with self.spending("benchmark_model"):
            result = phone.run(*argv, timeout_s=RUN_TIMEOUT_S)
        output = result.output
        if result.exit_code in (126, 127):
            where = phone.remote_path(BENCHMARK)
            hint = (
                f"{phone.remote_dir} is on a noexec mount: use android.remote_dir under "
                "/data/local/tmp"
                if phone.remote_dir.startswith("/sdcard")
                else "check that android.benchmark_model is LiteRT's binary for this phone's ABI"
            )
            state = "missing" if result.exit_code == 127 else "not executable"
            raise LatkitError(
                f"benchmark_model is {state} on the phone ({where}: {output.strip()[:160]}); {hint}"
            )
        try:
            if result.exit_code not in (0, None):
                raise BenchmarkParseError(
                    f"benchmark_model exited with status {result.exit_code}" + _first_error(output)
                )
            return parse_benchmark_output(output, expected_runs=runs)
        except BenchmarkParseError as exc:
            raw = self.save_raw(what, argv, result.exit_code, output)
            raise BenchmarkParseError(f"{what}: {exc}; raw output saved to {raw}") from None

    def timed_run(self, graph: str, what: str, warmup: int) -> tuple[RunStats, float | None]:
        """One cool run: wait for the phone to be cool, run, re-check; retake a run that got hot."""
        limit = self.settings.max_temperature_c
        before = self.cool_down(self._temperature)
        for _ in range(self.plan.max_retries + 1):
            run = self.benchmark(graph, what, warmup=warmup).inference
            after = self.temperature()
            self._temperature = after
            if after is None or after <= limit:
                hottest = [t for t in (before, after) if t is not None]
                return run, max(hottest) if hottest else None
            self.reporter.note(
                f"{what}: the phone reached {after:.1f} °C during the run "
                f"(max {limit:g} °C); discarding it and measuring again once cool",
                "warning",
            )
            before = self._temperature = self.cool_down(after)
        raise LatkitError(
            f"{what} heats the phone above max_temperature_c {limit:g} °C on every run "
            f"({self.plan.max_retries + 1} tries); lower timing.runs or raise max_temperature_c "
            f"in {self.source}, then run the same command again"
        )

    def measure_rounds(
        self,
        items: Sequence[tuple[str, str]],
        tick: Callable[[], None] | None = None,
    ) -> list[Outcome[SummaryRounds]]:
        """Every (graph, label) through the shared interleaved loop, one run per round."""
        return interleave(
            [partial(self.timed_run, graph, what) for graph, what in items],
            SummaryRounds.pool,
            self.plan,
            rewarm=self.plan.warmup,
            on_op_round=lambda _i: tick() if tick else None,
        )

    # --- Profiler API -------------------------------------------------------------------------

    def measure(
        self,
        ops: Sequence[OpSpec],
        on_measured: Callable[[MeasuredOp], None],
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        """Per batch: push the op files, time them round-robin, commit each op, clean up."""
        phone = self.ready()
        step = 1.0 / self.plan.rounds

        def tick() -> None:
            if on_progress:
                on_progress(step)

        for batch in chunks(ops, self.settings.batch_push):
            items = []
            for op in batch:
                name = file_name("op", op.key)
                with self.spending("export"):
                    model = export_tflite([op])
                with self.spending("push"):
                    items.append((phone.push(name, model), op.key))
                self._pushed.add(name)
            outcomes = self.measure_rounds(items, tick)
            for op, outcome in zip(batch, outcomes):
                temperature = outcome.measurement.temperature_c
                on_measured(MeasuredOp.from_outcome(op, outcome, temperature))
            if not self.options.keep_files:
                names = [file_name("op", op.key) for op in batch]
                phone.remove(*names)
                self._pushed.difference_update(names)

    def measure_network(self, network: Network) -> MeasuredOp:
        """The whole network as one `.tflite`, timed like an op."""
        phone = self.ready()
        ops = self.prepare(network.ops)
        name = file_name("net", arch_id(ops))
        remote = phone.push(name, export_tflite(ops))
        self._pushed.add(name)
        (outcome,) = self.measure_rounds([(remote, f"network {network.name or name}")])
        if not self.options.keep_files:
            phone.remove(name)
            self._pushed.discard(name)
        return MeasuredOp.from_outcome(None, outcome, outcome.measurement.temperature_c)


def _first_error(output: str) -> str:
    match = re.search(r"(?:ERROR|Error|error)[:!]?[^\n]*", output)
    return f": {match.group(0).strip()[:200]}" if match else ""
