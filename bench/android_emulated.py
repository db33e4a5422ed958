"""Profiling overhead on the emulated phone, for the full proxyless-mobile space.

    python bench/android_emulated.py [--space proxyless-mobile] [--port 0]

Starts `latkit emulate-phone` as its own process (so the phone's LiteRT runs do not share this
process's interpreter), profiles every distinct op over the tcp transport on loopback with the
timing of device_configs/emulated-phone.yaml, and prints

- wall time / timed inference time: what pushing the files, launching benchmark_model over ADB,
  reading temperatures and parsing costs on top of the timed runs (target <= 2);
- seconds per op.

The emulated phone runs benchmark_model as LiteRT on this host: these are host-CPU numbers, not a
phone's. Uses a temporary store and sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from latkit.devices import load_device
from latkit.profilers import get_profiler
from latkit.profilers.base import host_model
from latkit.profilers.session import profile_ops
from latkit.spaces import load_space
from latkit.store import MeasurementStore

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "device_configs" / "emulated-phone.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the emulated phone exited early: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the emulated phone did not listen on 127.0.0.1:{port}")


@contextlib.contextmanager
def emulated_phone(tmp: Path, port: int = 0) -> Iterator[Path]:
    """`latkit emulate-phone` running in its own process on a free loopback port, with its
    sandbox in `tmp`; yields the device file that reaches it over tcp."""
    port = port or free_port()
    data = yaml.safe_load(DEVICE.read_text())
    data["android"]["port"] = port
    data["android"]["benchmark_model"] = str(
        (DEVICE.parent / data["android"]["benchmark_model"]).resolve()
    )
    device_file = tmp / "emulated-phone.yaml"
    device_file.write_text(yaml.safe_dump(data))
    with (tmp / "phone.log").open("w") as log_file:  # a file, not a pipe nobody drains
        phone = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from latkit.cli import main; main()",
                "emulate-phone",
                "--port",
                str(port),
                "--root",
                str(tmp / "phone"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            wait_for(port, phone, Path(log_file.name))
            yield device_file
        finally:
            phone.terminate()
            phone.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="proxyless-mobile")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args()
    ops = load_space(args.space).distinct_ops()

    with tempfile.TemporaryDirectory(prefix="latkit-bench-") as tmp:
        with emulated_phone(Path(tmp), args.port) as device_file:
            device = load_device(device_file)
            profiler = get_profiler(device)
            profiler.raw_dir = Path(tmp) / "raw"
            with MeasurementStore(Path(tmp) / "bench.sqlite") as store:
                started = time.perf_counter()
                try:
                    summary = profile_ops(profiler, ops, store)
                finally:
                    profiler.close()
                wall = time.perf_counter() - started

    t = device.timing
    print(f"{summary.label} ({host_model()}), {args.space}: {summary.measured} ops")
    print(f"timing: warmup {t.warmup}, runs {t.runs}, rounds {t.rounds}; transport tcp on loopback")
    print(
        f"wall {wall:.1f} s / timed inference {summary.timed_s:.1f} s = "
        f"{wall / summary.timed_s:.2f}x overhead (target <= 2)"
    )
    spent = profiler.spent
    launches = spent["benchmark_model"]
    own = spent["export"] + spent["push"] + spent["temperature"]
    print(
        f"  benchmark_model launches {launches:.1f} s, of which {launches - summary.timed_s:.1f} s "
        "warm-up, model init, discarded re-measures and ADB round trips"
    )
    print(
        f"  latkit's own work {own:.1f} s: export {spent['export']:.1f} s, push "
        f"{spent['push']:.1f} s, temperature reads {spent['temperature']:.1f} s"
    )
    print(
        f"{wall / summary.measured:.3f} s per op; median CV across rounds {summary.median_cv:.2%}"
    )


if __name__ == "__main__":
    main()
