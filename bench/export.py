"""Figures for the .tflite writer and the host LiteRT profiler, measured side by side.

    python bench/export.py [--quick] [--space proxyless-mobile]

Prints (a) median seconds to write one op as .tflite with latkit's writer vs torch.onnx.export,
over every distinct op of the space (target: <= 50 ms per op); (b) the Spearman correlation of
LiteRT (XNNPACK) and onnxruntime op latencies on this CPU, 1 thread each, over the same ops;
(c) the LiteRT latency of the three published ProxylessNAS networks, whole network vs the sum of
its measured ops. `--quick` uses every third op and a short timing plan. Uses a temporary store.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from latkit.devices import DeviceConfig, Timing, load_device
from latkit.metrics import spearman
from latkit.ops import OpSpec
from latkit.profilers import get_profiler
from latkit.profilers.base import host_model
from latkit.profilers.onnx_export import export_onnx
from latkit.profilers.session import profile_ops
from latkit.profilers.tflite_writer import export_tflite
from latkit.spaces import Network, load_space
from latkit.store import MeasurementStore

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ROOT / "tests" / "data" / "archs" / "proxylessnas"
NETWORKS = ("proxyless_mobile", "proxyless_cpu", "proxyless_gpu")
QUICK_TIMING = Timing(warmup=3, runs=10, rounds=2, max_cv=0.05, max_retries=1)


def write_seconds(
    writer: Callable[[Sequence[OpSpec]], bytes], ops: Sequence[OpSpec]
) -> list[float]:
    writer(ops[:1])  # first call pays one-off imports and allocator warm-up
    times = []
    for op in ops:
        start = time.perf_counter()
        writer([op])
        times.append(time.perf_counter() - start)
    return times


def medians(profiler, ops: Sequence[OpSpec], store: MeasurementStore) -> dict[str, float]:
    profile_ops(profiler, ops, store)
    frame = store.dataframe(profiler.device.name, profiler.environment().env_id)
    return dict(zip(frame["key"], frame["median_ms"]))


def device(name: str, quick: bool) -> DeviceConfig:
    config = load_device(ROOT / "device_configs" / name)
    return config.model_copy(update={"timing": QUICK_TIMING}) if quick else config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every third op, short timing")
    parser.add_argument("--space", default="proxyless-mobile")
    args = parser.parse_args()
    started = time.perf_counter()
    ops = load_space(args.space).distinct_ops()
    if args.quick:
        ops = ops[::3]
    litert = get_profiler(device("local-cpu-litert.yaml", args.quick))
    ort = get_profiler(device("local-cpu.yaml", args.quick))
    print(
        f"host: {host_model()} ({platform.machine()}), {len(ops)} ops of {args.space}, "
        f"timing {litert.device.timing.model_dump()}, threads 1, {litert.environment().extra}"
    )

    tflite_s = write_seconds(export_tflite, ops)
    onnx_s = write_seconds(export_onnx, ops)
    t_med, o_med = statistics.median(tflite_s), statistics.median(onnx_s)
    print(
        f"(a) write one op: tflite writer median {t_med * 1000:.1f} ms (max "
        f"{max(tflite_s) * 1000:.1f} ms), torch.onnx.export median {o_med * 1000:.1f} ms (max "
        f"{max(onnx_s) * 1000:.1f} ms); onnx / tflite = {o_med / t_med:.1f}x"
    )

    with tempfile.TemporaryDirectory() as tmp, MeasurementStore(Path(tmp) / "s.sqlite") as store:
        lite_ms, ort_ms = medians(litert, ops, store), medians(ort, ops, store)
        keys = [op.key for op in ops]
        rho = spearman([lite_ms[k] for k in keys], [ort_ms[k] for k in keys])
        ratios = sorted(((lite_ms[k] / ort_ms[k], k) for k in keys), reverse=True)
        geo = statistics.geometric_mean(r for r, _ in ratios)
        print(
            f"(b) Spearman(LiteRT, onnxruntime) over {len(keys)} ops = {rho:.3f}; "
            f"LiteRT / onnxruntime geometric mean {geo:.2f}x"
        )
        rest = [op.key for op in ops if op.kernel != 7]
        rho_rest = spearman([lite_ms[k] for k in rest], [ort_ms[k] for k in rest])
        print(
            f"    without kernel-7 ops ({len(rest)} left): Spearman = {rho_rest:.3f}; "
            "largest and smallest LiteRT / onnxruntime ratios:"
        )
        for ratio, key in ratios[:3] + ratios[-2:]:
            print(
                f"    {ratio:5.2f}x  LiteRT {lite_ms[key]:8.3f} ms  ort {ort_ms[key]:8.3f} ms  {key}"
            )

        for name in NETWORKS:
            net = Network.load(ARCHS / f"{name}.config")
            whole = litert.measure_network(net).stats.median_ms
            timed = [op for op in net.ops if op.type != "zero"]  # zero adds no op to a network
            per_op = medians(litert, timed, store)
            op_sum = sum(per_op[op.key] for op in timed)
            print(
                f"(c) {name}: LiteRT whole network {whole:.3f} ms, sum of {len(timed)} ops "
                f"{op_sum:.3f} ms, whole / sum = {whole / op_sum:.3f}"
            )
    print(f"bench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
