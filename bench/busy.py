"""Timing beside busy neighbours: does latkit stay right, or say when it cannot? (issue 20)

    python bench/busy.py [--quick] [--device device_configs/local-cpu.yaml]
                         [--spaces proxyless-tiny,proxyless-mobile]
                         [--loads spin,train,install,install+train]

For each space, profiles its ops quiet (the reference), then beside each kind of load, side by
side in one run, each into its own fresh temporary store:

- `spin`: one process spinning on the CPU (`while True: pass`);
- `train`: a small CNN training loop with `torch.set_num_threads(2)`;
- `install`: a package install loop (`pip install --no-deps --no-index --force-reinstall` of a
  wheel built here from an installed pure-Python package, into a temporary target: unzip, write,
  byte-compile; no network);
- `install+train`: both, the combination that was seen to hurt (median CV 6.5%, 40 of 70 ops
  unstable on 2 cores).

Per condition it prints the median CV across rounds, the rows flagged unstable, the rows timed
while the machine was contended, the median busy_cores, the median and p90 of |load / quiet - 1|
per op, how many ops are within 3% of their quiet median or flagged, and what latkit told the
user (its notes while profiling, and the summary's last line). Goal: under each load, median CV
<= 2%, and every op within 3% of its quiet median or flagged.

Every load process is started and killed by this script, in its own process group, and each
also stops itself after --max-load-s. The figures depend on everything else the machine runs:
run it on an otherwise quiet machine. --quick (a smoke run): proxyless-tiny only, its first 16
ops, and the spinning load only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib
import importlib.util
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latkit.devices import DeviceConfig, load_device
from latkit.profilers import ProfilerOptions, get_profiler
from latkit.profilers.base import host_model
from latkit.profilers.load import contended, core_count
from latkit.profilers.session import ProfileSummary, profile_ops
from latkit.spaces import load_space
from latkit.store import MeasurementStore

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "device_configs" / "local-cpu.yaml"
LOADS = ("spin", "train", "install", "install+train")
#: an op this close to its quiet median is right even unflagged
WITHIN = 0.03
#: the goal for the median CV under load
MAX_MEDIAN_CV = 0.02
#: pure-Python packages a wheel for the install loop can be built from (the first present)
WHEEL_SOURCES = ("networkx", "sympy", "hypothesis", "rich", "pip")

SPIN = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"
TRAIN = """
import sys, time
import torch
from torch import nn
end = time.time() + float(sys.argv[1])
torch.set_num_threads(2)
net = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1),
    nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    nn.Flatten(), nn.Linear(64, 10),
)
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
print("ready", flush=True)
while time.time() < end:
    opt.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
"""
INSTALL = """
import shutil, subprocess, sys, tempfile, time
end, wheel = time.time() + float(sys.argv[1]), sys.argv[2]
pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall",
       "--quiet", "--disable-pip-version-check"]
print("ready", flush=True)
while time.time() < end:
    target = tempfile.mkdtemp(prefix="busy-install-")
    try:
        subprocess.run([*pip, "--target", target, wheel], check=True, timeout=600)
    finally:
        shutil.rmtree(target, ignore_errors=True)
"""


class Notes:
    """A reporter that prints latkit's notes as they come and keeps them."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def task(self, description: str, total: float | None):
        return lambda amount=1.0: None

    def note(self, text: str, level: str = "info") -> None:
        print(f"    latkit: {text}", flush=True)
        self.notes.append(text)


def _hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(folder: Path) -> Path:
    """A wheel of an installed pure-Python package's sources, renamed `busyload` so that it
    never shadows anything: what the install loop installs over and over."""
    name = next(n for n in WHEEL_SOURCES if importlib.util.find_spec(n))
    source = Path(importlib.import_module(name).__file__).parent
    wheel = folder / "busyload-1.0-py3-none-any.whl"
    meta = {
        "busyload-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: busyload\nVersion: 1.0\n",
        "busyload-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench/busy.py\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files = {f"busyload/{p.relative_to(source)}": p.read_bytes() for p in source.rglob("*.py")}
    files.update(meta)
    record = "".join(f"{path},{_hash(data)},{len(data)}\n" for path, data in files.items())
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(
            "busyload-1.0.dist-info/RECORD", record + "busyload-1.0.dist-info/RECORD,,\n"
        )
    print(
        f"install load: a wheel of {name}'s {len(files) - len(meta)} files ({wheel.stat().st_size >> 20} MB)"
    )
    return wheel


def _start(code: str, *args: str) -> subprocess.Popen:
    """One load process in its own process group (so that its children die with it)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


@contextlib.contextmanager
def running(kind: str, wheel: Path | None, max_s: float) -> Iterator[None]:
    """The load `kind` running beside the block: started, ready, then killed with its group."""
    limit = str(max_s)
    procs: list[subprocess.Popen] = []
    try:
        for part in kind.split("+") if kind != "quiet" else []:
            if part == "spin":
                procs.append(_start(SPIN, limit))
            elif part == "train":
                procs.append(_start(TRAIN, limit))
            elif part == "install":
                procs.append(_start(INSTALL, limit, str(wheel)))
        for proc in procs:
            if proc.stdout and proc.args[2] in (TRAIN, INSTALL):
                proc.stdout.readline()  # "ready" once the load really runs
        time.sleep(2.0 if procs else 0.0)  # let it settle on the cores
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait(timeout=60)


@dataclass
class Condition:
    """One profile of one space beside one load, and what latkit said."""

    space: str
    load: str
    summary: ProfileSummary
    medians: dict[str, float]
    unstable: dict[str, bool]
    busy_cores: list[float]
    contended: int
    notes: list[str]
    waited: list[float]

    def ratios(self, quiet: Condition) -> np.ndarray:
        """|load / quiet - 1| per op."""
        keys = [k for k in self.medians if k in quiet.medians]
        return np.array([abs(self.medians[k] / quiet.medians[k] - 1) for k in keys])

    def covered(self, quiet: Condition) -> tuple[int, int]:
        """(ops within `WITHIN` of their quiet median or flagged, ops compared)."""
        keys = [k for k in self.medians if k in quiet.medians]
        good = [
            abs(self.medians[k] / quiet.medians[k] - 1) <= WITHIN or self.unstable[k] for k in keys
        ]
        return sum(good), len(keys)


def profile(
    device: DeviceConfig, space: str, load: str, limit: int | None, folder: Path
) -> Condition:
    """Profile `space`'s ops into a fresh store in `folder`; the condition's figures."""
    reporter = Notes()
    ops = load_space(space).distinct_ops()[:limit] if limit else load_space(space).distinct_ops()
    profiler = get_profiler(device, ProfilerOptions(reporter=reporter))
    with MeasurementStore(folder / f"{space}-{load}.sqlite") as store:
        try:
            summary = profile_ops(profiler, ops, store)
        finally:
            profiler.close()
        frame = store.dataframe(device.name)
    busy = [b for b in frame["busy_cores"] if not math.isnan(b)]
    flags = [contended(w, s) for w, s in zip(frame["waited"], frame["steal"])]
    notes = [*reporter.notes, summary.health()]
    print(f"    latkit: {summary.health()}")
    return Condition(
        space,
        load,
        summary,
        dict(zip(frame["key"], frame["median_ms"])),
        dict(zip(frame["key"], frame["unstable"].fillna(False).astype(bool))),
        busy,
        sum(flags),
        notes,
        [w for w in frame["waited"] if not math.isnan(w)],
    )


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def report(conditions: list[Condition]) -> None:
    """One table per space, then what latkit said under each load."""
    head = (
        f"{'load':<14}{'median CV':>10}{'unstable':>10}{'contended':>10}{'busy cores':>11}"
        f"{'waited':>8}"
        f"{'|r-1| med':>10}{'p90':>8}{'ok':>9}  goal"
    )
    for space in dict.fromkeys(c.space for c in conditions):
        rows = [c for c in conditions if c.space == space]
        quiet = rows[0]
        print(f"\n{space} ({quiet.summary.ops} ops); ok: within {WITHIN:.0%} of quiet or flagged")
        print(head)
        for c in rows:
            ratios = c.ratios(quiet) if c is not quiet else np.array([])
            med = float(np.median(ratios)) if len(ratios) else math.nan
            p90 = float(np.percentile(ratios, 90)) if len(ratios) else math.nan
            good, total = c.covered(quiet)
            busy = statistics.median(c.busy_cores) if c.busy_cores else math.nan
            waited = statistics.median(c.waited) if c.waited else math.nan
            n = c.summary.rows
            missed = [f"CV > {MAX_MEDIAN_CV:.0%}"] if c.summary.median_cv > MAX_MEDIAN_CV else []
            if c is not quiet and good < total:
                missed.append(f"{total - good} ops off, unflagged")
            print(
                f"{c.load:<14}{c.summary.median_cv:>10.2%}{len(c.summary.unstable):>6}/{n:<3}"
                f"{c.contended:>6}/{n:<3}{busy:>11.2f}{_pct(waited):>8}{_pct(med):>10}{_pct(p90):>8}"
                f"{'-' if c is quiet else f'{good}/{total}':>9}  {'; '.join(missed) or 'met'}"
            )
        if quiet.contended:
            print(f"  the quiet reference was not quiet: {quiet.contended} rows contended")
        for c in rows:
            print(f"  {c.load}: latkit said:")
            for note in dict.fromkeys(c.notes):
                print(f"    {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=Path, default=DEVICE)
    parser.add_argument("--spaces", default="proxyless-tiny,proxyless-mobile")
    parser.add_argument("--loads", default=",".join(LOADS))
    parser.add_argument("--quick", action="store_true", help="tiny, 16 ops, spinning load only")
    parser.add_argument("--max-load-s", type=float, default=1800.0)
    args = parser.parse_args()
    spaces = ["proxyless-tiny"] if args.quick else args.spaces.split(",")
    loads = ["spin"] if args.quick else args.loads.split(",")
    unknown = set(loads) - set(LOADS)
    if unknown:
        parser.error(
            f"unknown load(s) {', '.join(sorted(unknown))}; choose from {', '.join(LOADS)}"
        )
    limit = 16 if args.quick else None
    device = load_device(args.device)
    print(
        f"{host_model()}, {core_count()} cores; {device.name}: {device.runtime}, "
        f"{device.threads} thread(s), timing {device.timing.model_dump()}"
    )
    print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    started = time.perf_counter()
    conditions = []
    with tempfile.TemporaryDirectory(prefix="latkit-busy-") as tmp:
        folder = Path(tmp)
        wheel = build_wheel(folder) if any("install" in load for load in loads) else None
        for space in spaces:
            for load in ["quiet", *loads]:
                print(f"--- {space}, {load}", flush=True)
                with running(load, wheel, args.max_load_s):
                    conditions.append(profile(device, space, load, limit, folder))
    report(conditions)
    print("\nload average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
