"""`benchmark_model` on the emulated phone: the pushed `.tflite` runs with LiteRT on the host CPU,
and the output is the real tool's current format, so the parser sees what a phone prints."""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np

from latkit.emulator.shell import Output
from latkit.emulator.system import EmulatedShell, FileError


def _flag_value(args: list[str], name: str, default: str) -> str:
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def _g(value: float) -> str:
    """How benchmark_model prints a double: C++ stream default, 6 significant digits."""
    text = f"{value:.6g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{exponent[0]}{int(exponent[1:]):02d}"
    return text


def _stat_line(times_us: list[float]) -> str:
    ints = [int(t) for t in times_us]
    if len(ints) == 1:
        return f"count=1 curr={ints[0]} p5={ints[0]} median={ints[0]} p95={ints[0]}"
    ordered = sorted(ints)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    avg = statistics.fmean(times_us)
    std = int(math.sqrt(statistics.pvariance(ints)))
    return (
        f"count={len(ints)} first={ints[0]} curr={ints[-1]} min={ordered[0]} max={ordered[-1]} "
        f"avg={_g(avg)} std={std} p5={pick(0.05)} median={pick(0.5)} p95={pick(0.95)}"
    )


def _timed_loop(
    invoke: Callable[[], object], runs: int, min_secs: float, max_secs: float
) -> list[float]:
    times: list[float] = []
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if len(times) >= runs and elapsed >= min_secs or times and elapsed >= max_secs:
            return times
        t0 = time.perf_counter()
        invoke()
        times.append(float(int((time.perf_counter() - t0) * 1e6)))  # whole µs, as the tool keeps


class HostBenchmark:
    """`benchmark_model` for the emulated phone: LiteRT on the host, real output format."""

    def __call__(self, args: list[str], out: Output, shell: EmulatedShell) -> int:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        log = lambda text: out.err(f"INFO: {text}\n")  # noqa: E731
        graph = _flag_value(args, "graph", "")
        threads = int(_flag_value(args, "num_threads", "-1"))
        runs = int(_flag_value(args, "num_runs", "50"))
        warmup_runs = int(_flag_value(args, "warmup_runs", "1"))
        min_secs = float(_flag_value(args, "min_secs", "1.0"))
        warmup_min_secs = float(_flag_value(args, "warmup_min_secs", "0.5"))
        max_secs = float(_flag_value(args, "max_secs", "150"))
        use_xnnpack = _flag_value(args, "use_xnnpack", "true") == "true"
        log("STARTING!")
        log("Log parameter values verbosely: [0]")
        log(f"Min num runs: [{runs}]")
        log(f"Num threads: [{threads}]")
        log(f"Min warmup runs: [{warmup_runs}]")
        log(f"Graph: [{graph}]")
        log(f"#threads used for CPU inference: [{threads}]")
        log(f"Use xnnpack: [{int(use_xnnpack)}]")
        for flag in ("use_gpu", "use_nnapi"):
            if _flag_value(args, flag, "false") == "true":
                out.err(
                    f"ERROR: {flag[4:].upper()} delegate is not available on the emulated phone "
                    "(it runs LiteRT on the host CPU).\nERROR: Benchmarking failed.\n"
                )
                return 1
        try:
            model = shell.read(graph)
        except FileError:
            out.err(f"ERROR: Could not open '{graph}'.\nERROR: Failed to mmap model {graph}\n")
            out.err("ERROR: Benchmarking failed.\n")
            return 1
        log(f"Loaded model {graph}")
        started = time.perf_counter()
        try:
            interpreter = Interpreter(
                model_content=model,
                num_threads=threads if threads > 0 else None,
                experimental_op_resolver_type=(
                    OpResolverType.AUTO
                    if use_xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                ),
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            out.err(f"ERROR: Failed to initialize the interpreter: {str(exc).splitlines()[0]}\n")
            out.err("ERROR: Benchmarking failed.\n")
            return 1
        if use_xnnpack:
            log("Created TensorFlow Lite XNNPACK delegate for CPU.")
        init_us = int((time.perf_counter() - started) * 1e6)
        rng = np.random.default_rng(0)
        for detail in interpreter.get_input_details():
            shape = tuple(int(d) for d in detail["shape"])
            interpreter.set_tensor(
                detail["index"], rng.standard_normal(shape).astype(detail["dtype"])
            )
        log(f"The input model file size (MB): {_g(len(model) / 1e6)}")
        log(f"Initialized session in {init_us / 1000:.3f}ms.")
        log(
            f"Running benchmark for at least {warmup_runs} iterations and at least "
            f"{_g(warmup_min_secs)} seconds but terminate if exceeding {_g(max_secs)} seconds."
        )
        warm = _timed_loop(interpreter.invoke, max(warmup_runs, 1), warmup_min_secs, max_secs)
        log(_stat_line(warm))
        out.err("\n")
        log(
            f"Running benchmark for at least {runs} iterations and at least {_g(min_secs)} seconds "
            f"but terminate if exceeding {_g(max_secs)} seconds."
        )
        timed = _timed_loop(interpreter.invoke, max(runs, 1), min_secs, max_secs)
        log(_stat_line(timed))
        out.err("\n")
        log(
            f"Inference timings in us: Init: {init_us}, First inference: {int(warm[0])}, "
            f"Warmup (avg): {_g(statistics.fmean(warm))}, Inference (avg): {_g(statistics.fmean(timed))}"
        )
        log(
            "Note: as the benchmark tool itself affects memory footprint, the following is only "
            "APPROXIMATE to the actual memory footprint of the model at runtime. Take the "
            "information at your discretion."
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log(f"Memory footprint delta from the start of the tool (MB): init=0 overall={_g(peak)}")
        return 0
