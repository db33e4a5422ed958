"""Profile the full proxyless-mobile space on this CPU with onnxruntime, and print the figures.

    python bench/profile_cpu.py [--device device_configs/local-cpu.yaml] [--no-baseline]

Prints, for the device's timing plan: distinct ops, median across-round CV (target <= 1%), wall /
timed (ONNX export and session creation included; target <= 1.5), how many ops were timed in
blocks of calls, retried or left unstable, and for each published ProxylessNAS network the
end-to-end latency next to the sum of its measured ops. Unless --no-baseline, the same space is
then profiled again in the same run with the previous plan (the full warm-up before every round,
one call per clock read), so the two are compared side by side under the same load. Uses fresh
temporary stores. The machine's load average is printed before and after: on a shared machine
the figures depend on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from latkit.devices import DeviceConfig, load_device
from latkit.profilers import get_profiler
from latkit.profilers.base import host_model
from latkit.profilers.session import profile_ops
from latkit.spaces import Network, load_space
from latkit.store import MeasurementStore

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ROOT / "tests" / "data" / "archs" / "proxylessnas"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(device: DeviceConfig, space: str, title: str, networks: bool) -> None:
    profiler = get_profiler(device)
    loading = [0.0]
    load_op = profiler.load

    def timed_load(ops):
        started = time.perf_counter()
        try:
            return load_op(ops)
        finally:
            loading[0] += time.perf_counter() - started

    profiler.load = timed_load  # type: ignore[method-assign]
    print(f"--- {title}: timing {device.timing.model_dump()}")
    with tempfile.TemporaryDirectory() as tmp, MeasurementStore(Path(tmp) / "s.sqlite") as store:
        ops = load_space(space).distinct_ops()
        summary = profile_ops(profiler, ops, store)
        frame = store.dataframe(device.name)
        blocked = frame[frame["block"] > 1]
        print(f"distinct ops: {summary.ops}")
        print(f"median across-round CV: {summary.median_cv:.4%}")
        print(
            f"wall {summary.wall_s:.1f} s / timed {summary.timed_s:.1f} s = "
            f"{summary.wall_s / summary.timed_s:.2f} (export and session creation included)"
        )
        rest = summary.wall_s - summary.timed_s - loading[0]
        print(
            f"  of which ONNX export + session creation {loading[0]:.1f} s, warm-up, block "
            f"sizing and bookkeeping {rest:.1f} s"
        )
        if len(blocked):
            sizes = f"{int(blocked['block'].min())}..{int(blocked['block'].max())}"
            print(f"ops timed in blocks of calls: {len(blocked)} (block sizes {sizes})")
        else:
            print("ops timed in blocks of calls: 0")
        print(f"ops retried: {summary.retried}, still unstable: {len(summary.unstable)}")
        print(f"({load()})")
        if not networks:
            return
        env = profiler.environment()
        for name in ("proxyless_mobile", "proxyless_cpu", "proxyless_gpu"):
            net = Network.load(ARCHS / f"{name}.config", batch=device.batch_size)
            whole = profiler.measure_network(net).stats.median_ms
            timed = [op for op in net.ops if op.type != "zero"]
            profile_ops(profiler, timed, store)
            medians = store.dataframe(device.name, env.env_id).set_index("key")["median_ms"]
            op_sum = float(medians.loc[[op.key for op in timed]].sum())
            print(
                f"{name}: whole network {whole:.3f} ms, sum of {len(timed)} ops "
                f"{op_sum:.3f} ms, whole / sum = {whole / op_sum:.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(ROOT / "device_configs/local-cpu.yaml"))
    parser.add_argument("--space", default="proxyless-mobile")
    parser.add_argument("--no-baseline", action="store_true", help="Skip the previous plan.")
    args = parser.parse_args()
    device = load_device(args.device)
    print(
        f"host: {host_model()} ({platform.machine()}), runtime {device.runtime}, "
        f"threads {device.threads}; {load()}"
    )
    run(device, args.space, "this plan", networks=True)
    if not args.no_baseline:
        plan = device.timing.model_copy(update={"rewarm": device.timing.warmup, "min_block_ms": 0})
        previous = device.model_copy(update={"timing": plan})
        run(
            previous,
            args.space,
            "previous plan (full warm-up every round, one call per read)",
            False,
        )
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
