"""Bring your own network: F on five paper networks exported to ONNX (issue 22), against timing.

    python bench/onnx_networks.py [--out DIR] [--db STORE.sqlite] [--device FILE] [--quick]

MobileNetV2 1.0, MnasNet-A1, FBNet-C, MobileNetV3-Large and EfficientNet-B0, written from their
papers' layer tables (tests/paper_networks.py), are exported to ONNX, and on the device file
(default device_configs/local-cpu.yaml: onnxruntime, 1 thread, this CPU), through the CLI:

- timed: `latkit time-network --onnx X` in a store of its own (`--no-ops`), so no timing of
  these networks or their ops reaches F's store, once before everything else and once after;
  F is judged against the geometric mean of the two (the machine drifts in between);
- (a) F extrapolating: `latkit profile --space proxyless-mobile` into a fresh store, `latkit
  fit`, then `latkit predict --onnx X`; F has timed none of these networks' ops;
- (b) F from their ops: `latkit profile --onnx X` for each into the same store, `latkit fit`,
  then `latkit predict --onnx X` again.

Prints per network: the share of its ONNX nodes that map to op specs (`latkit.graphs`), the
measured ms, and for (a) and (b) F's ms, its error and whether the 90% interval holds the
measured ms; then the goals, (a) ±10% and (b) ±5% on all five, met or not. Nothing is asserted.
The load average is printed before and after every step, the CPU model (lscpu) in the header.
OUT/summary.json holds every figure, OUT/logs/ every command's output.

--db copies an existing SQLite store (e.g. one with proxyless-mobile already profiled on this
device) into OUT and works on the copy; the profile then only completes what is missing.
--quick is a smoke run: 2 rounds of 10 runs per timing and the first 60 proxyless-mobile ops.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the networks live beside the test that checks them

from paper_networks import export, paper_networks  # noqa: E402

from latkit.graphs import read_model  # noqa: E402
from latkit.profilers.base import host_model  # noqa: E402

DEVICE = ROOT / "device_configs" / "local-cpu.yaml"
QUICK_TIMING = {"warmup": 2, "runs": 10, "rounds": 2, "max_cv": 0.5}
QUICK_LIMIT = "60"
GOALS = {"a": 0.10, "b": 0.05}


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Runner:
    """Runs `python -m latkit ...` with its output in OUT/logs, one line per step."""

    def __init__(self, out: Path) -> None:
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}

    def latkit(self, step: str, *args: str | Path, required: bool = True) -> bool:
        before = load()
        started = time.perf_counter()
        argv = [sys.executable, "-m", "latkit", *map(str, args)]
        proc = subprocess.run(argv, env=self.env, text=True, capture_output=True)
        log = self.logs / f"{step}.log"
        log.write_text(f"$ {' '.join(argv[1:])}\n{proc.stdout}{proc.stderr}")
        status = "ok" if proc.returncode == 0 else f"EXIT {proc.returncode}, see {log}"
        wall = time.perf_counter() - started
        print(f"  load {before} -> {load()}  {step:<34} {wall:7.1f} s  {status}", flush=True)
        if proc.returncode and required:
            raise SystemExit(f"{step} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc.returncode == 0


def device_file(args: argparse.Namespace, out: Path) -> tuple[Path, str]:
    """The device file and its name; with --quick a copy that times less, under its own name."""
    config = yaml.safe_load(args.device.read_text())
    if not args.quick:
        return args.device, config["name"]
    config.update(name=f"{config['name']}-quick", timing=QUICK_TIMING)
    path = out / "device-quick.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config["name"]


def fresh_store(out: Path, reuse: Path | None) -> Path:
    """OUT/latkit.sqlite: empty, or a copy of `reuse` (SQLite's backup, safe for a live file)."""
    store = out / "latkit.sqlite"
    store.unlink(missing_ok=True)
    if reuse is not None:
        with sqlite3.connect(reuse) as source, sqlite3.connect(store) as target:
            source.backup(target)
    return store


def time_all(
    run: Runner, when: str, device: Path, files: dict[str, Path], out: Path
) -> dict[str, float | None]:
    """`latkit time-network --onnx` of each network, in a store of its own, so no timing of
    these networks reaches F's store: {name: measured ms}."""
    t_db = out / f"timing-{when}.sqlite"
    t_db.unlink(missing_ok=True)
    measured = {}
    for n, path in files.items():
        t_json = out / f"time-{when}-{n}.json"
        args_t = ["--device", device, "--onnx", path, "--db", t_db, "--no-ops", "--json", t_json]
        run.latkit(f"time-network {n} ({when})", "time-network", *args_t, required=False)
        entry = read_entry(t_json, "networks")
        measured[n] = None if entry is None else entry["measured_ms"]
    return measured


def truth(first: float | None, last: float | None) -> float | None:
    """The measured ms F is judged against: the geometric mean of the timings before and
    after everything else, since this machine's speed drifts by a few per cent in between."""
    return None if first is None or last is None else (first * last) ** 0.5


def read_entry(path: Path, key: str) -> dict[str, Any] | None:
    """The first entry of a `--json` file's `key` list, or None if the step wrote none."""
    try:
        return json.loads(path.read_text())[key][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def predict_all(
    run: Runner, part: str, device: Path, files: dict[str, Path], store: Path, data: Path
) -> dict[str, dict[str, Any] | None]:
    """Fit F on the store, then `latkit predict --onnx` each network: {name: its JSON entry}."""
    run.latkit(f"{part}: fit", "fit", "--device", device, "--db", store, "--data-dir", data)
    answers = {}
    for name, path in files.items():
        out = data / f"predict-{part}-{name}.json"
        args = ["--device", device, "--onnx", path, "--db", store, "--data-dir", data]
        run.latkit(f"{part}: predict {name}", "predict", *args, "--json", out, required=False)
        answers[name] = read_entry(out, "networks")
    return answers


def judged(answer: dict[str, Any] | None, measured: float | None) -> dict[str, Any]:
    """F's ms, its relative error against `measured`, and whether its interval holds it."""
    if answer is None or measured is None:
        return {"predicted_ms": None, "error": None, "inside": None}
    predicted = answer["predicted_ms"]
    low, high = answer["interval"]["low_ms"], answer["interval"]["high_ms"]
    inside = low <= measured and (high is None or measured <= high)
    return {"predicted_ms": predicted, "error": predicted / measured - 1, "inside": inside}


def cells(figures: dict[str, Any]) -> list[str]:
    if figures["predicted_ms"] is None:
        return ["n/a", "n/a", "n/a"]
    inside = "yes" if figures["inside"] else "no"
    return [f"{figures['predicted_ms']:.2f}", f"{figures['error']:+.1%}", inside]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ["network", "mapped", "measured ms", "(a) F ms", "err", "in 90%"]
    head += ["(b) F ms", "err", "in 90%"]
    lines = [head]
    for row in rows:
        measured = "n/a" if row["measured_ms"] is None else f"{row['measured_ms']:.2f}"
        lines.append(
            [row["network"], f"{row['share_mapped']:.0%}", measured, *cells(row["a"])]
            + cells(row["b"])
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  " + "  ".join(cell.rjust(w) for cell, w in zip(line, widths)))


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for part, bound in GOALS.items():
        errors = [row[part]["error"] for row in rows]
        met = sum(e is not None and abs(e) <= bound for e in errors)
        status = "met" if met == len(rows) else "NOT met"
        out.append(f"goal ({part}) ±{bound:.0%} on all {len(rows)}: {met}/{len(rows)}, {status}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench-onnx-networks")
    parser.add_argument("--db", type=Path, help="an SQLite store to start from (copied)")
    parser.add_argument("--device", type=Path, default=DEVICE, help="device file")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer runs and ops")
    args = parser.parse_args()
    if args.db is not None and not args.db.is_file():
        parser.error(f"--db {args.db}: no such SQLite file")

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {host_model()}; {os.cpu_count()} logical cores; load {load()}")
    device, name = device_file(args, out)
    print(f"device {name} ({device}); out {out}" + (" (quick)" if args.quick else ""))
    run = Runner(out)
    (out / "onnx").mkdir(exist_ok=True)
    files = {n: export(n, out / "onnx" / f"{n}.onnx") for n in paper_networks()}
    mapped = {n: read_model(path) for n, path in files.items()}

    first = time_all(run, "first", device, files, out)

    store, data = fresh_store(out, args.db), out / "data"
    limit = ["--limit", QUICK_LIMIT] if args.quick else []
    profile = ["--device", device, "--db", store]
    run.latkit(
        "a: profile proxyless-mobile", "profile", *profile, "--space", "proxyless-mobile", *limit
    )
    a = predict_all(run, "a", device, files, store, data)
    for n, path in files.items():
        run.latkit(f"b: profile {n}", "profile", *profile, "--onnx", path, required=False)
    b = predict_all(run, "b", device, files, store, data)
    last = time_all(run, "last", device, files, out)
    measured = {n: truth(first[n], last[n]) for n in files}
    for n in files:
        if first[n] and last[n]:
            print(f"  {n}: timed {first[n]:.2f} ms first, {last[n]:.2f} ms last (drift)")

    rows = [
        {
            "network": n,
            "share_mapped": mapped[n].share_mapped,
            "unmapped": list(mapped[n].unmapped),
            "measured_ms": measured[n],
            "a": judged(a[n], measured[n]),
            "b": judged(b[n], measured[n]),
        }
        for n in files
    ]
    print()
    print_table(rows)
    for row in rows:
        for node in row["unmapped"]:
            print(f"  unmapped in {row['network']}: {node}")
    goals = goal_lines(rows)
    print("\n".join(goals))
    print(f"load after: {load()}")
    summary = {"cpu": host_model(), "device": name, "quick": args.quick, "rows": rows}
    (out / "summary.json").write_text(json.dumps({**summary, "goals": goals}, indent=2))


if __name__ == "__main__":
    main()
