"""Parse what LiteRT's `benchmark_model` prints, in every generation of its output.

- 2018 (TF 1.x): `Running benchmark for N iterations`, `count= first= curr= min= max= avg= std=`
  lines, an optional per-op profile (`Run Order` table), and at the end
  `Average inference timings in us: Warmup: W, Init: I, no stats: AVG`.
- current (TF 2.x / LiteRT): the same `count=` lines (newer builds add `p5= median= p95=`, and the
  warmup line may carry only `count= curr=`), then
  `Inference timings in us: Init: I, First inference: F, Warmup (avg): W, Inference (avg): AVG`,
  then `Peak memory footprint (MB): init=.. overall=..` or `Memory footprint delta ...`.

Lines may carry a log prefix (`INFO: `, `I tflite  : `). Numbers may be printed as `1.24027e+06`.
Anything that does not add up raises `BenchmarkParseError`, and nothing else.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from latkit.errors import LatkitError

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"([A-Za-z0-9_]+)=({NUMBER})")
_COUNT_LINE = re.compile(rf"(?:^|\s)count=({NUMBER})\b")
_CURRENT = re.compile(
    rf"Inference timings in us: Init: ({NUMBER}), First inference: ({NUMBER}), "
    rf"Warmup \(avg\): ({NUMBER}), Inference \(avg\): ({NUMBER})"
)
_HISTORIC = re.compile(
    rf"Average inference timings in us: Warmup: ({NUMBER}), Init: ({NUMBER}), no stats: ({NUMBER})"
)
_PEAK = re.compile(rf"Peak memory footprint \(MB\): init=({NUMBER}) overall=({NUMBER})")
_PERIODIC_PEAK = re.compile(
    rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUMBER})"
)
_PROFILE_ROW = re.compile(
    rf"^\s*(\S+)\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})%\s+({NUMBER})%\s+"
    rf"({NUMBER})\s+(\d+)\s+\[(.*)\]\s*$"
)
_ERROR = re.compile(r"(?:ERROR|Error|Failed|failed)\b[^\n]*")
# statistics sections of the op profiler that also print `count=` but are not the benchmark
_NOT_A_RUN = ("Timings (microseconds):", "Memory (bytes):")
_PREFIX = re.compile(r"^(?:[A-Z]+: |[VDIWEF] [\w.-]+\s*: )")


class BenchmarkParseError(LatkitError):
    """benchmark_model printed something this parser cannot turn into timings."""


@dataclass(frozen=True)
class RunStats:
    """One `count=... avg=... std=...` line, in microseconds."""

    count: int
    avg_us: float
    std_us: float
    min_us: float
    max_us: float
    first_us: float | None = None
    median_us: float | None = None


@dataclass(frozen=True)
class ProfileRow:
    """One row of the per-op profile (`Run Order` table), times in milliseconds."""

    node_type: str
    start_ms: float
    first_ms: float
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int
    name: str


@dataclass(frozen=True)
class BenchmarkResult:
    """The timed run of one benchmark_model invocation and what it reported around it."""

    inference: RunStats
    warmup: RunStats | None
    init_us: float | None
    warmup_avg_us: float | None
    first_inference_us: float | None
    peak_memory_mb: float | None
    profile: tuple[ProfileRow, ...]
    generation: str  # "current" | "2018" | "bare"

    @property
    def median_us(self) -> float:
        """The median where the build prints one; otherwise the average (no raw times exist)."""
        run = self.inference
        return run.median_us if run.median_us is not None else run.avg_us


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BenchmarkParseError(f"benchmark_model printed a non-finite number {text!r}")
    return value


def _le(a: float, b: float) -> bool:
    """a <= b up to the 6 significant digits benchmark_model prints."""
    return a <= b or _close(a, b)


def _strip(line: str) -> str:
    return _PREFIX.sub("", line.strip(), count=1)


def _run_stats(line: str) -> RunStats | None:
    pairs = {key: value for key, value in _PAIR.findall(line)}
    if "count" not in pairs:
        return None
    count_value = _number(pairs["count"])
    if count_value < 1 or count_value != int(count_value):
        raise BenchmarkParseError(f"benchmark_model line has a bad run count: {line.strip()!r}")
    count = int(count_value)
    if "avg" in pairs:
        avg = _number(pairs["avg"])
    elif count == 1 and "curr" in pairs:
        avg = _number(pairs["curr"])
    else:
        raise BenchmarkParseError(f"benchmark_model line has no avg=: {line.strip()!r}")
    std = _number(pairs["std"]) if "std" in pairs else 0.0
    low = _number(pairs["min"]) if "min" in pairs else avg
    high = _number(pairs["max"]) if "max" in pairs else avg
    first = _number(pairs["first"]) if "first" in pairs else None
    median = _number(pairs["median"]) if "median" in pairs else None
    if min(avg, std, low, high) < 0 or not (_le(low, avg) and _le(avg, high)):
        raise BenchmarkParseError(
            f"benchmark_model line is inconsistent (need 0 <= min <= avg <= max): {line.strip()!r}"
        )
    return RunStats(count, avg, std, low, high, first, median)


def _profile(lines: list[str]) -> tuple[ProfileRow, ...]:
    """The last `Run Order` table: for current builds that is the regular runs, not init."""
    start = None
    for i, line in enumerate(lines):
        if "Run Order" in line and line.lstrip().startswith("="):
            start = i
    if start is None:
        return ()
    rows = []
    for line in lines[start + 1 :]:
        if line.lstrip().startswith("=") or (not line.strip() and rows):
            break
        match = _PROFILE_ROW.match(line)
        if match:
            g = match.groups()
            rows.append(
                ProfileRow(
                    node_type=g[0],
                    start_ms=_number(g[1]),
                    first_ms=_number(g[2]),
                    avg_ms=_number(g[3]),
                    percent=_number(g[4]),
                    cdf_percent=_number(g[5]),
                    mem_kb=_number(g[6]),
                    times_called=int(g[7]),
                    name=g[8],
                )
            )
    return tuple(rows)


def _close(a: float, b: float) -> bool:
    """Equal up to the 6 significant digits benchmark_model prints."""
    return abs(a - b) <= 1e-5 * max(abs(a), abs(b)) + 1.0


def parse_benchmark_output(text: str, expected_runs: int | None = None) -> BenchmarkResult:
    """Timings of the timed run; raises BenchmarkParseError if there are none or they disagree.

    `expected_runs` (the `--num_runs` asked for) catches output cut off after the warmup line,
    which would otherwise look like a short timed run.
    """
    if not isinstance(text, str):
        raise BenchmarkParseError("benchmark_model output must be text")
    lines = [_strip(line) for line in text.splitlines()]
    runs = [
        stats
        for line in lines
        if _COUNT_LINE.search(line) and not line.startswith(_NOT_A_RUN)
        for stats in [_run_stats(line)]
        if stats is not None
    ]
    joined = "\n".join(lines)
    current, historic = _CURRENT.search(joined), _HISTORIC.search(joined)
    if not runs:
        error = _ERROR.search(text)
        detail = f": {error.group(0).strip()[:200]}" if error else ""
        raise BenchmarkParseError(f"benchmark_model printed no timing lines (count=...){detail}")
    inference = runs[-1]
    warmup = runs[-2] if len(runs) > 1 else None
    init_us = warmup_avg = first_inference = None
    generation = "bare"
    if current:
        init_us, first_inference, warmup_avg, summary_avg = (_number(g) for g in current.groups())
        generation = "current"
    elif historic:
        warmup_avg, init_us, summary_avg = (_number(g) for g in historic.groups())
        generation = "2018"
    if generation != "bare" and not _close(summary_avg, inference.avg_us):
        raise BenchmarkParseError(
            f"benchmark_model summary says {summary_avg:g} us but its last timing line says "
            f"avg={inference.avg_us:g} us; the output is truncated or mixed"
        )
    if expected_runs is not None and inference.count < expected_runs:
        raise BenchmarkParseError(
            f"benchmark_model timed {inference.count} runs, fewer than --num_runs={expected_runs}; "
            "the output is truncated"
        )
    peak = _PEAK.search(joined)
    periodic = _PERIODIC_PEAK.search(joined)
    peak_mb = _number(peak.group(2)) if peak else _number(periodic.group(1)) if periodic else None
    return BenchmarkResult(
        inference=inference,
        warmup=warmup,
        init_us=init_us,
        warmup_avg_us=warmup_avg,
        first_inference_us=first_inference,
        peak_memory_mb=peak_mb,
        profile=_profile(lines),
        generation=generation,
    )
