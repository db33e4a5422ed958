"""Profile the full proxyless-mobile space on this CPU with onnxruntime, and print the figures.

    python bench/profile_cpu.py [--device device_configs/local-cpu.yaml]

Prints: distinct ops, median across-round CV (target <= 1%), overhead wall / timed (export
included; target <= 1.5), and for each published ProxylessNAS network the end-to-end latency
next to the sum of its measured ops (a first look at additivity). Uses a fresh temporary store.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

from latkit.devices import load_device
from latkit.profilers import get_profiler
from latkit.profilers.base import host_model
from latkit.profilers.session import profile_ops
from latkit.spaces import Network, load_space
from latkit.store import MeasurementStore

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ROOT / "tests" / "data" / "archs" / "proxylessnas"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(ROOT / "device_configs/local-cpu.yaml"))
    parser.add_argument("--space", default="proxyless-mobile")
    args = parser.parse_args()
    device = load_device(args.device)
    profiler = get_profiler(device)
    print(
        f"host: {host_model()} ({platform.machine()}), runtime {device.runtime}, "
        f"threads {device.threads}, timing {device.timing.model_dump()}"
    )
    with tempfile.TemporaryDirectory() as tmp, MeasurementStore(Path(tmp) / "s.sqlite") as store:
        ops = load_space(args.space).distinct_ops()
        summary = profile_ops(profiler, ops, store)
        print(f"distinct ops: {summary.ops}")
        print(f"median across-round CV: {summary.median_cv:.4%}")
        print(
            f"wall {summary.wall_s:.1f} s / timed {summary.timed_s:.1f} s = "
            f"{summary.wall_s / summary.timed_s:.2f} (export and session creation included)"
        )
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


if __name__ == "__main__":
    main()
