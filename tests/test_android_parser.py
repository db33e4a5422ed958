"""benchmark_model output in all its generations, and a fuzz that only ever parses or refuses."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latkit.profilers.android.parser import (
    BenchmarkParseError,
    RunStats,
    parse_benchmark_output,
)
from latkit.profilers.android.profiler import pooled_stats

# a real LiteRT 2.x run on a phone, as printed (logging prefix, scientific notation)
CURRENT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [/data/local/tmp/ssd.tflite]
INFO: Loaded model /data/local/tmp/ssd.tflite
INFO: The input model file size (MB): 67.3128
INFO: Initialized session in 5.579ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415

INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Peak memory footprint (MB): init=6.36328 overall=109.832
"""

# the 2019-2022 format: no log prefix, no percentiles
PLAIN_2X = """\
STARTING!
Num runs: [50]
Graph: [/data/local/tmp/yolov5s.tflite]
Loaded model /data/local/tmp/yolov5s.tflite
Initialized session in 16.242ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=2 first=360262 curr=248910 min=248910 max=360262 avg=304586 std=55676

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442

Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Peak memory footprint (MB): init=4.92969 overall=138.809
"""


def test_the_2018_phone_log_parses_with_its_per_op_profile(published):
    text = (published / "fixtures/benchmark_model/proxylessnas-mobile-2018.txt").read_text()
    result = parse_benchmark_output(text)
    assert result.generation == "2018"
    assert result.inference.avg_us == 80670.2
    assert result.inference.std_us == 871
    assert result.inference.count == 100
    assert (result.inference.min_us, result.inference.max_us) == (79589, 83607)
    assert result.warmup is not None and result.warmup.count == 10
    assert result.warmup_avg_us == 83496.6 and result.init_us == 47967
    # the per-op table: 77 nodes executed, in run order
    assert len(result.profile) == 77
    first, last = result.profile[0], result.profile[-1]
    assert (first.node_type, first.avg_ms, first.name) == ("CONV_2D", 3.246, "MNasNet/Conv/Relu6")
    assert (last.node_type, last.start_ms, last.name) == (
        "RESHAPE",
        80.665,
        "MNasNet/Logits/output",
    )
    assert sum(r.node_type == "DEPTHWISE_CONV_2D" for r in result.profile) == 20
    assert result.profile[9].node_type == "ADD" and result.profile[9].avg_ms == 0.076
    # no median in this build: the median falls back to the average (documented)
    assert result.median_us == 80670.2


def test_the_current_format_with_prefix_percentiles_and_exponents():
    result = parse_benchmark_output(CURRENT, expected_runs=50)
    assert result.generation == "current"
    assert result.inference == RunStats(
        count=50,
        avg_us=1.24027e06,
        std_us=2565,
        min_us=1238588,
        max_us=1252566,
        first_us=1249964,
        median_us=1239807,
    )
    assert result.median_us == 1239807
    assert result.warmup is not None and result.warmup.count == 1
    assert result.first_inference_us == 1357602 and result.init_us == 5579
    assert result.peak_memory_mb == 109.832
    assert result.profile == ()


def test_the_plain_2x_format_and_android_log_prefixes():
    result = parse_benchmark_output(PLAIN_2X)
    assert result.inference.avg_us == 249684 and result.inference.count == 50
    assert result.peak_memory_mb == 138.809
    logcat = "\n".join(f"I tflite  : {line}" for line in PLAIN_2X.splitlines())
    assert parse_benchmark_output(logcat).inference == result.inference


def test_the_historic_average_line_without_a_profile():
    text = (
        "Running benchmark for 5 iterations\n"
        "count=5 first=900 curr=800 min=790 max=900 avg=830 std=40\n"
        "Running benchmark for 20 iterations\n"
        "count=20 first=801 curr=799 min=780 max=820 avg=800.5 std=9\n"
        "Average inference timings in us: Warmup: 830, Init: 1200, no stats: 800.5\n"
    )
    result = parse_benchmark_output(text)
    assert result.generation == "2018"
    assert result.inference.avg_us == 800.5 and result.init_us == 1200


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no timing lines"),
        ("ERROR: Could not open '/data/local/tmp/x.tflite'.\n", "Could not open"),
        (
            PLAIN_2X.replace("Inference (avg): 249684", "Inference (avg): 300000"),
            "truncated or mixed",
        ),
        ("count=0 first=1 curr=1 min=1 max=1 avg=1 std=0\n", "bad run count"),
        ("count=3 first=1 curr=1 min=5 max=9 avg=2 std=0\n", "inconsistent"),
        ("count=3 first=1 curr=1 min=1 max=1 avg=nan std=0\n", "no avg"),
        ("count=3 first=1 curr=1 min=1 max=9 avg=1e999 std=0\n", "non-finite"),
    ],
)
def test_what_does_not_add_up_is_refused(text, message):
    with pytest.raises(BenchmarkParseError, match=message):
        parse_benchmark_output(text)


def test_output_cut_after_the_warmup_is_not_taken_for_a_short_run():
    cut = CURRENT.split("INFO: Running benchmark for at least 50")[0]
    assert parse_benchmark_output(cut).inference.count == 1  # alone it looks like a run...
    with pytest.raises(BenchmarkParseError, match="fewer than --num_runs=50"):
        parse_benchmark_output(cut, expected_runs=50)  # ...so the profiler says how many it asked


def test_rounds_pool_exactly():
    a = RunStats(count=10, avg_us=100.0, std_us=3.0, min_us=95, max_us=110, median_us=99)
    b = RunStats(count=30, avg_us=110.0, std_us=4.0, min_us=101, max_us=130, median_us=109)
    stats = pooled_stats([a, b])
    mean = (10 * 100 + 30 * 110) / 40
    var = (10 * (9 + (100 - mean) ** 2) + 30 * (16 + (110 - mean) ** 2)) / 40
    assert stats.mean_ms == pytest.approx(mean / 1000)
    assert stats.std_ms == pytest.approx(math.sqrt(var) / 1000)
    assert (stats.min_ms, stats.max_ms, stats.runs) == (0.095, 0.130, 40)
    assert stats.median_ms == pytest.approx(statistics.median([99, 109]) / 1000)
    assert stats.cv == pytest.approx(statistics.stdev([100, 110]) / statistics.fmean([100, 110]))
    assert stats.min_ms <= stats.median_ms <= stats.max_ms
    # a summary holds no percentiles, and the row says its statistics are derived
    assert math.isnan(stats.p10_ms) and math.isnan(stats.p90_ms) and not stats.exact


# --- fuzz --------------------------------------------------------------------------------------

# Hypothesis spends most of its time generating, so outputs are built from cheap draws: tokens of
# every generation's vocabulary in random order, real outputs cut and spliced, and raw text.
TOKENS = [
    *("count=", "first=", "curr=", "min=", "max=", "avg=", "std=", "p5=", "median=", "p95="),
    *(
        "0",
        "1",
        "3",
        "50",
        "100",
        "-3",
        ".5",
        "80670.2",
        "1.24027e+06",
        "1e999",
        "nan",
        "1e",
        "--3",
    ),
    *(" ", " ", "\n", "\n", "\t", "%", "[", "]", ", ", "INFO: ", "I tflite  : ", "ERROR: "),
    "Inference timings in us: Init: ",
    ", First inference: ",
    ", Warmup (avg): ",
    ", Inference (avg): ",
    "Average inference timings in us: Warmup: ",
    ", Init: ",
    ", no stats: ",
    "Peak memory footprint (MB): init=",
    " overall=",
    "Overall peak memory footprint (MB) via periodic monitoring: ",
    "============================== Run Order ==============================",
    "  CONV_2D  0.000  3.100  3.246  4.026%  4.026%  0.000  1  [MNasNet/Conv/Relu6]",
    "Timings (microseconds): ",
    "Memory (bytes): ",
    "count=100 first=80068 curr=81025 min=79589 max=83607 avg=80670.2 std=871",
]
SPLICED = st.tuples(
    st.sampled_from([CURRENT, PLAIN_2X]),
    st.integers(0, len(CURRENT)),
    st.integers(0, len(CURRENT)),
    st.sampled_from(TOKENS),
).map(lambda t: t[0][: t[1]] + t[3] + t[0][t[2] :])
OUTPUT = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=40).map("".join),
    SPLICED,
    st.text(max_size=60),
)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(OUTPUT, st.sampled_from([None, 1, 50, 100]))
def test_fuzz_parses_or_raises_only_its_own_error(text, expected_runs):
    try:
        result = parse_benchmark_output(text, expected_runs=expected_runs)
    except BenchmarkParseError:
        return
    run = result.inference
    assert run.count >= 1 and math.isfinite(run.avg_us) and run.avg_us >= 0
    assert expected_runs is None or run.count >= expected_runs
    stats = pooled_stats([run])  # anything the parser accepts, the profiler can store
    assert math.isfinite(stats.mean_ms) and stats.runs == run.count
