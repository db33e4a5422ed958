"""Can F be trusted instead of a timing? Issue 19's figures, before vs after, in one run.

    python bench/trust.py [--parts readme,tables,search] [--out DIR] [--before REV] [--quick]

"Before" is the code at REV (default 7c31b28), installed by `bench/before.sh REV DIR` into
DIR/site (DIR: --before-dir, default /tmp/latkit-before-REV) and run as
`PYTHONPATH=DIR/site python -m latkit ...`; "after" is this working tree (the venv's editable
install), run as `python -m latkit ...`. Each version works in its own folder, OUT/before and
OUT/after (its own data/latkit.sqlite and data/local-cpu/), and every step runs for before, then
for after, before the next step starts, so the machine's load hits both alike. Each step's line
gives the load average (1, 5, 15 min) before it ran and its wall time; its output is in
OUT/<version>/logs/. The header gives the CPU model and the cores.

Parts:
1. readme: the README's order on device_configs/local-cpu.yaml (onnxruntime, 1 thread):
   a. `latkit quickstart` (proxyless-tiny: profile, calibrate, fit, validate, search);
   b. `latkit profile --space proxyless-mobile`;  c. `latkit fit --device local-cpu`;
   d. `latkit validate --space proxyless-tiny --networks 40 --seed 1` (quickstart validates on
      seed 0); e. `latkit validate --space proxyless-mobile --networks 30 --seed 1`;
   f. `latkit predict` on the published ProxylessNAS Mobile, CPU and GPU nets;
   g. `latkit time-network` on the same nets into an empty store (a fresh timing that does not
      enter the main store).
   Prints ±5%, ±10% and interval coverage of both validations (n/a where the version writes no
   interval), and per published net: predicted, 90% interval, fresh measured, error, inside.
2. tables: F fitted on a seeded random 20% of the distinct ops of the ProxylessNAS phone table
   and of the 17 once-for-all Note10 tables (pooled; an op in several tables is averaged), scored
   on the other 80%: ±10%, ±5%, RMSPE, interval coverage; and each Note10 table alone (mean of
   the 17, and the worst ±10%). Then each version's own
   `bench/predictor_accuracy.py --sections kfold,ofa-res,extrap`, printed as it wrote it.
3. search: from each version's store and F after part 1, `latkit search` on proxyless-tiny at
   25%, 50% and 75% of F's predicted range (asked of `search --epochs 0 --no-measure`), plus
   `--hard-budget` at 50%; the returned net.config re-timed by `latkit time-network` into an
   empty store: fresh / T, and F's first-round and reported errors.

Goals (issue 19) are printed beside the figures. OUT/summary.json holds every figure. --quick is
a smoke run: fewer networks, a partial mobile profile, one epoch per search, one published net.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DEVICE_FILE = ROOT / "device_configs" / "local-cpu.yaml"
DEVICE = "device_configs/local-cpu.yaml"  # relative to each version's folder, as in the README
DEVICE_NAME = "local-cpu"
ARCHS = ROOT / "tests" / "data" / "archs" / "proxylessnas"
PUBLISHED = ("proxyless_mobile", "proxyless_cpu", "proxyless_gpu")
LUTS = ROOT / "tests" / "data" / "luts"
PARTS = ("readme", "tables", "search")
PA_SECTIONS = "kfold,ofa-res,extrap"
FRACTIONS = (0.25, 0.5, 0.75)
TRAIN_SHARE = 0.2

console = Console(width=120, highlight=False, soft_wrap=True, force_terminal=False)


@dataclass(frozen=True)
class Sizes:
    """How much each part does: the full bench, or a smoke run (--quick)."""

    quickstart: list[str]
    profile: list[str]
    tiny_networks: int
    mobile_networks: int
    published: tuple[str, ...]
    time_ops: bool
    search_epochs: list[str]
    pa_sections: str


FULL = Sizes(
    quickstart=[],
    profile=[],
    tiny_networks=40,
    mobile_networks=30,
    published=PUBLISHED,
    time_ops=True,
    search_epochs=["--epochs", "4", "--warmup-epochs", "2", "--final-epochs", "1"],
    pa_sections=PA_SECTIONS,
)
QUICK = Sizes(
    quickstart=["--networks", "4", "--epochs", "1", "--warmup-epochs", "1", "--final-epochs", "0"],
    profile=["--limit", "8"],
    tiny_networks=4,
    mobile_networks=3,
    published=PUBLISHED[:1],
    time_ops=False,
    search_epochs=["--epochs", "1", "--warmup-epochs", "0", "--final-epochs", "0"],
    pa_sections="ofa-res",
)


@dataclass
class Version:
    """One side of the comparison: how to run its code, and where it works."""

    label: str
    env: dict[str, str]
    home: Path
    bench: Path  # its own bench/predictor_accuracy.py
    figures: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.home / name


@dataclass(frozen=True)
class Step:
    rc: int
    wall_s: float
    load: tuple[float, float, float]
    log: Path
    stdout: str


# ---------------------------------------------------------------- machine, versions, steps


def load_text(load: tuple[float, float, float] | None = None) -> str:
    return "load " + " ".join(f"{x:.2f}" for x in (load or os.getloadavg()))


def hardware() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def install_before(rev: str, where: Path) -> Path:
    """`bench/before.sh REV DIR`: REV's code installed under DIR/site."""
    subprocess.run(
        ["bash", str(ROOT / "bench" / "before.sh"), rev, str(where)],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return where / "site"


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(NO_COLOR="1", COLUMNS="120", PYTHONUNBUFFERED="1")
    return env


def installed(label: str, rev: str, out: Path, where: Path | None = None) -> Version:
    """A version run from an install of `rev` (`bench/before.sh`)."""
    where = where or Path(tempfile.gettempdir()) / f"latkit-{label}-{rev}"
    site = install_before(rev, where)
    bench = where / "src" / "bench" / "predictor_accuracy.py"
    return Version(label, {**base_env(), "PYTHONPATH": str(site)}, out / label, bench)


def make_versions(args: argparse.Namespace, out: Path) -> list[Version]:
    """Before: an install of --before. After: an install of --after, if given (so the working
    tree may change while a long run goes on), else the working tree itself."""
    before = installed("before", args.before, out, args.before_dir)
    if args.after:
        after = installed("after", args.after, out)
    else:
        after = Version(
            "after", base_env(), out / "after", ROOT / "bench" / "predictor_accuracy.py"
        )
    for version in (before, after):
        (version.home / "device_configs").mkdir(parents=True, exist_ok=True)
        (version.home / "logs").mkdir(exist_ok=True)
        shutil.copy(DEVICE_FILE, version.home / DEVICE)
    return [before, after]


def run(version: Version, name: str, argv: list[str], stdin: str | None = None) -> Step:
    """Run `python ARGV` in the version's folder with its code; log its output; one line."""
    load = os.getloadavg()
    log = version.path(f"logs/{name}.log")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=version.home,
        env=version.env,
        input=stdin,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wall = time.perf_counter() - started
    log.write_text(proc.stdout)
    status = "ok" if proc.returncode == 0 else f"EXIT {proc.returncode} (see {log})"
    console.print(
        f"  {time.strftime('%H:%M:%S')}  {load_text(load)}  {version.label:<6}  {name:<22} "
        f"{wall:7.1f} s  {status}"
    )
    return Step(proc.returncode, wall, load, log, proc.stdout)


def latkit(version: Version, name: str, *args: str) -> Step:
    return run(version, name, ["-m", "latkit", *args])


def interleaved(versions: list[Version], name: str, make_args) -> dict[str, Step]:
    """One step for each version in turn (before, then after)."""
    return {v.label: run(v, name, make_args(v)) for v in versions}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_imports(versions: list[Version]) -> None:
    """Each version must import its own code: REV's install, or this working tree."""
    probe = "import latkit, latkit.predictors as p, latkit.search as s\n"
    probe += "for m in (latkit, p, s): print(m.__file__)"
    for version in versions:
        step = run(version, "import-check", ["-c", probe])
        files = step.stdout.split()[-3:]
        expected = Path(version.env.get("PYTHONPATH", ROOT)).resolve()
        version.figures["latkit_files"] = files
        console.print(f"  {version.label}: {', '.join(files)}")
        if step.rc or not all(Path(f).resolve().is_relative_to(expected) for f in files):
            raise SystemExit(f"{version.label} does not import latkit from {expected}")


# ---------------------------------------------------------------- formatting


def pct(value: Any, signed: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def ms(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    out = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right")
    for cells in rows:
        out.add_row(*cells)
    console.print(out)


def heading(text: str) -> None:
    console.print(f"\n== {text}  ({load_text()})")


# ---------------------------------------------------------------- part 1: the README's order


def readme_steps(sizes: Sizes) -> list[tuple[str, Any]]:
    nets = [str(ARCHS / f"{name}.config") for name in sizes.published]
    arch = [a for net in nets for a in ("--arch", net)]
    ops = [] if sizes.time_ops else ["--no-ops"]
    return [
        ("a-quickstart", lambda v: ["quickstart", "--json", "qs.json", *sizes.quickstart]),
        (
            "b-profile-mobile",
            lambda v: (
                ["profile", "--device", DEVICE, "--space", "proxyless-mobile"]
                + ["--json", "profile-mobile.json", *sizes.profile]
            ),
        ),
        ("c-fit", lambda v: ["fit", "--device", DEVICE_NAME, "--json", "fit.json"]),
        ("d-validate-tiny", lambda v: validate_args("proxyless-tiny", sizes.tiny_networks, "tiny")),
        (
            "e-validate-mobile",
            lambda v: validate_args("proxyless-mobile", sizes.mobile_networks, "mobile"),
        ),
        (
            "f-predict",
            lambda v: ["predict", "--device", DEVICE_NAME, *arch, "--json", "predict.json"],
        ),
        (
            "g-time-network",
            lambda v: (
                ["time-network", "--device", DEVICE, *arch, *ops]
                + ["--db", "fresh.sqlite", "--json", "tn.json"]
            ),
        ),
    ]


def validate_args(space: str, networks: int, tag: str) -> list[str]:
    head = ["validate", "--device", DEVICE, "--space", space, "--networks", str(networks)]
    return [*head, "--seed", "1", "--json", f"v-{tag}.json"]


def keep_validation_csv(version: Version, tag: str) -> None:
    """The validation CSV is overwritten by the next validate: keep a copy."""
    found = version.path(f"data/{DEVICE_NAME}/validation/validation.csv")
    if found.exists():
        shutil.copy(found, version.path(f"v-{tag}.csv"))


def csv_coverage(path: Path) -> float | None:
    """Share of rows with low_ms <= measured_ms <= high_ms, if the CSV has the columns."""
    if not path.exists():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"low_ms", "high_ms", "measured_ms"} <= rows[0].keys():
        return None
    inside = [float(r["low_ms"]) <= float(r["measured_ms"]) <= float(r["high_ms"]) for r in rows]
    return sum(inside) / len(inside)


def validation_figures(version: Version, tag: str) -> dict[str, Any]:
    data = read_json(version.path(f"v-{tag}.json")) or {}
    cover = data.get("coverage")
    if cover is None:
        cover = csv_coverage(version.path(f"v-{tag}.csv"))
    return {
        "n": data.get("n"),
        "acc5": data.get("acc5"),
        "acc10": data.get("acc10"),
        "rmspe": data.get("rmspe"),
        "spearman": data.get("spearman"),
        "coverage": cover,
    }


def published_figures(version: Version) -> list[dict[str, Any]]:
    predicted = (read_json(version.path("predict.json")) or {}).get("networks", [])
    timed = (read_json(version.path("tn.json")) or {}).get("networks", [])
    rows = []
    for i, answer in enumerate(predicted):
        interval = answer.get("interval") or {}
        fresh = timed[i].get("measured_ms") if i < len(timed) else None
        row = {
            "name": answer.get("name"),
            "predicted_ms": answer.get("predicted_ms"),
            "low_ms": interval.get("low_ms"),
            "high_ms": interval.get("high_ms"),
            "fresh_ms": fresh,
            "sum_of_ops_ms": timed[i].get("sum_of_ops_ms") if i < len(timed) else None,
        }
        row["error"] = error(row["predicted_ms"], fresh)
        row["inside"] = inside(row["low_ms"], row["high_ms"], fresh)
        rows.append(row)
    return rows


def error(predicted: Any, measured: Any) -> float | None:
    if not isinstance(predicted, (int, float)) or not isinstance(measured, (int, float)):
        return None
    return (predicted - measured) / measured


def inside(low: Any, high: Any, value: Any) -> bool | None:
    if not isinstance(value, (int, float)) or not isinstance(low, (int, float)):
        return None
    return low <= value and (high is None or value <= high)


def print_readme(versions: list[Version]) -> None:
    goals = {
        "tiny": {"acc5": "≥ 80%", "acc10": "≥ 95%", "coverage": "85-95%"},
        "mobile": {"acc5": "≥ 90%", "acc10": "", "coverage": "85-95%"},
    }
    rows = []
    for tag in ("tiny", "mobile"):
        for key, label in (("acc5", "±5%"), ("acc10", "±10%"), ("coverage", "coverage")):
            cells = [pct(v.figures["validate"][tag][key]) for v in versions]
            rows.append([f"validate {tag}: {label}", goals[tag][key], *cells])
        rows.append(
            [f"validate {tag}: n", "", *(str(v.figures["validate"][tag]["n"]) for v in versions)]
        )
    for key, label, goal in (("acc10", "±10%", ""), ("coverage", "coverage", "85-95%")):
        cells = [pct((v.figures["fit"].get("test") or {}).get(key)) for v in versions]
        rows.append([f"fit, held-out ops: {label}", goal, *cells])
    rows.append(["fit: family", "", *(str(v.figures["fit"].get("family")) for v in versions)])
    title = "validate (unseen networks, seed 1) and fit (its own held-out split)"
    table(title, ["figure", "goal", "before", "after"], rows)
    print_published(versions)


def print_published(versions: list[Version]) -> None:
    rows = []
    for v in versions:
        for r in v.figures["published"]:
            ratio = (
                f"{r['fresh_ms'] / r['sum_of_ops_ms']:.3f}"
                if r["fresh_ms"] and r["sum_of_ops_ms"]
                else "n/a"
            )
            yes = {True: "yes", False: "NO", None: "n/a"}[r["inside"]]
            rows.append(
                [
                    f"{v.label} {r['name']}",
                    ms(r["predicted_ms"]),
                    f"{ms(r['low_ms'])} .. {ms(r['high_ms'])}",
                    ms(r["fresh_ms"]),
                    ratio,
                    pct(r["error"], signed=True),
                    yes,
                ]
            )
    columns = ["network", "predicted", "90% interval", "fresh", "fresh/ops", "error", "inside"]
    table("published nets: F vs a fresh time-network (goal: ±5%, inside)", columns, rows)


def part_readme(versions: list[Version], sizes: Sizes) -> None:
    heading("part readme: the README's order, quickstart first")
    for name, make_args in readme_steps(sizes):
        steps = interleaved(versions, name, lambda v, m=make_args: ["-m", "latkit", *m(v)])
        for v in versions:
            v.figures.setdefault("steps", {})[name] = {"rc": steps[v.label].rc}
            v.figures["steps"][name].update(wall_s=steps[v.label].wall_s, load=steps[v.label].load)
        if name.startswith(("d-", "e-")):
            for v in versions:
                keep_validation_csv(v, "tiny" if name.startswith("d-") else "mobile")
    for v in versions:
        v.figures["validate"] = {t: validation_figures(v, t) for t in ("tiny", "mobile")}
        v.figures["published"] = published_figures(v)
        v.figures["quickstart"] = quickstart_figures(v)
        fit = read_json(v.path("fit.json")) or {}
        v.figures["fit"] = {k: fit.get(k) for k in ("family", "n_train", "n_test", "test")}
    print_readme(versions)


def quickstart_figures(version: Version) -> dict[str, Any]:
    data = read_json(version.path("qs.json")) or {}
    search = data.get("search") or {}
    return {
        "target_ms": data.get("target_ms"),
        "measured_over_target": data.get("measured_over_target"),
        "validation": data.get("validation"),
        "range_ms": search.get("range_ms"),
    }


# ---------------------------------------------------------------- part 2: published tables

TABLES_HELPER = r"""
import json, sys
from pathlib import Path
import numpy as np, yaml
import latkit
from latkit import metrics
from latkit.ops import detect_dialect, from_key
from latkit.predictors import LatencyPredictor

luts, share = Path(sys.argv[1]), float(sys.argv[2])

def load(path):
    table = yaml.safe_load(path.read_text())
    dialect = "ofa" if any(detect_dialect(k) == "ofa" for k in table) else "proxylessnas"
    return [(from_key(k, dialect), float(v["mean"])) for k, v in table.items()]

def distinct(rows):
    pooled = {}
    for op, y in rows:
        if y > 0:
            pooled.setdefault(op, []).append(y)
    return list(pooled), np.array([np.mean(v) for v in pooled.values()])

def score(name, files):
    ops, y = distinct([row for f in files for row in load(f)])
    order = np.random.default_rng(0).permutation(len(ops))
    k = max(2, round(share * len(ops)))
    train, test = order[:k], order[k:]
    f = LatencyPredictor(seed=0).fit([ops[i] for i in train], y[train])
    test_ops = [ops[i] for i in test]
    pred = f.predict(test_ops)
    low, high = f.predict_interval(test_ops)
    out = {"table": name, "n_train": int(k), "n_test": int(len(test))}
    out.update(metrics.report(pred, y[test]))
    out["coverage"] = metrics.coverage(low, high, y[test])
    out["family"] = (getattr(f, "meta", {}) or {}).get("family")
    return out

def one_by_one(name, files):
    each = [score(p.name, [p]) for p in files]
    out = {"table": name, "n_train": each[0]["n_train"], "n_test": each[0]["n_test"]}
    for key in ("acc5", "acc10", "rmspe", "coverage"):
        out[key] = float(np.mean([e[key] for e in each]))
    out["min_acc10"] = min(e["acc10"] for e in each)
    families = [str(e["family"]) for e in each]
    out["family"] = max(set(families), key=families.count)
    out["each"] = each
    return out

ofa = sorted((luts / "ofa-note10").glob("*_lookup_table.yaml"))
results = [
    score("ProxylessNAS phone (mobile_trim)", [luts / "proxylessnas" / "mobile_trim.yaml"]),
    score("Note10, 17 tables pooled", ofa),
    one_by_one("Note10, each table alone (mean)", ofa),
]
print("RESULT " + json.dumps({"latkit": latkit.__file__, "tables": results}))
"""


def helper_result(step: Step) -> dict[str, Any] | None:
    for line in reversed(step.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return None


def part_tables(versions: list[Version], sizes: Sizes) -> None:
    heading(f"part tables: fit on {TRAIN_SHARE:.0%} of a table's distinct ops, score the rest")
    args = ["-", str(LUTS), str(TRAIN_SHARE)]
    steps = {v.label: run(v, "tables-20pct", args, stdin=TABLES_HELPER) for v in versions}
    for v in versions:
        result = helper_result(steps[v.label])
        v.figures["tables"] = result["tables"] if result else None
        if result is None:
            console.print(f"  {v.label}: no result; tail of {steps[v.label].log}:")
            console.print(tail(steps[v.label].stdout))
    print_tables(versions)
    heading(f"bench/predictor_accuracy.py --sections {sizes.pa_sections}, each version's own")
    for v in versions:
        step = run(v, "predictor-accuracy", [str(v.bench), "--sections", sizes.pa_sections])
        v.figures["predictor_accuracy"] = {"rc": step.rc, "log": str(step.log)}
    for v in versions:
        step_log = Path(v.figures["predictor_accuracy"]["log"])
        rc = v.figures["predictor_accuracy"]["rc"]
        console.print(f"\n---- {v.label}: {v.bench} (exit {rc}) ----")
        console.print(step_log.read_text().rstrip(), markup=False)


def print_tables(versions: list[Version]) -> None:
    rows = []
    for v in versions:
        for t in v.figures["tables"] or []:
            rows.append(
                [
                    f"{v.label} {t['table']}",
                    f"{t['n_train']}/{t['n_test']}",
                    pct(t["acc10"]),
                    pct(t["acc5"]),
                    f"{t['rmspe']:.2f}%",
                    pct(t["coverage"]),
                    str(t.get("family")),
                ]
            )
            if "min_acc10" in t:
                rows[-1][0] += f" (min ±10% {t['min_acc10']:.1%})"
    columns = ["table", "train/test", "±10%", "±5%", "RMSPE", "coverage", "family"]
    table("op tables (goal: ±10% ≥ 99%, coverage 85-95%)", columns, rows)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# ---------------------------------------------------------------- part 3: searches


def search_args(target: float, out: str, epochs: list[str], *extra: str) -> list[str]:
    return [
        "search",
        "--device",
        DEVICE,
        "--space",
        "proxyless-tiny",
        "--target-ms",
        f"{target:.6g}",
        "--train-threads",
        "1",
        "--out",
        out,
        "--json",
        f"{out}.json",
        *epochs,
        *extra,
    ]


RANGE_TEXT = re.compile(r"([0-9.eE+-]+)\s*\.\.\s*([0-9.eE+-]+)\s*ms")


def probe_range(version: Version) -> tuple[float, float] | None:
    """F's predicted range for proxyless-tiny now: `search --epochs 0 --no-measure`."""
    guess = (version.figures.get("quickstart") or {}).get("target_ms") or quickstart_target(version)
    out = "search/range"
    shutil.rmtree(version.path(out), ignore_errors=True)
    nothing = ["--epochs", "0", "--warmup-epochs", "0", "--final-epochs", "0", "--no-measure"]
    step = latkit(version, "search-range", *search_args(guess or 1.0, out, nothing))
    found = (read_json(version.path(f"{out}.json")) or {}).get("range_ms")
    if found and len(found) == 2 and found[1] > found[0] > 0:
        return float(found[0]), float(found[1])
    match = RANGE_TEXT.search(step.stdout)  # a refused target names the range
    return (float(match[1]), float(match[2])) if match else None


def quickstart_target(version: Version) -> float | None:
    return (read_json(version.path("qs.json")) or {}).get("target_ms")


def part_search(versions: list[Version], sizes: Sizes) -> None:
    heading("part search: proxyless-tiny at 25/50/75% of F's range, and --hard-budget at 50%")
    for v in versions:
        found = probe_range(v)
        v.figures["range_ms"] = found
        console.print(f"  {v.label}: F's range for proxyless-tiny {found} ms")
    runs = [(f"t{int(f * 100)}", f, False) for f in FRACTIONS] + [("hard50", 0.5, True)]
    for tag, fraction, hard in runs:
        for v in versions:
            v.figures.setdefault("searches", []).append(one_search(v, tag, fraction, hard, sizes))
    print_searches(versions)


def one_search(v: Version, tag: str, fraction: float, hard: bool, sizes: Sizes) -> dict[str, Any]:
    row: dict[str, Any] = {"tag": tag, "fraction": fraction, "hard": hard}
    if not v.figures.get("range_ms"):
        return row
    low, high = v.figures["range_ms"]
    target = low + fraction * (high - low)
    out = f"search/{tag}"
    shutil.rmtree(v.path(out), ignore_errors=True)
    extra = ["--hard-budget"] if hard else []
    step = latkit(v, f"search-{tag}", *search_args(target, out, sizes.search_epochs, *extra))
    result = read_json(v.path(f"{out}.json")) or {}
    row.update(search_figures(result, target, step.rc))
    net = Path((result.get("files") or {}).get("net_config") or v.path(f"{out}/net.config"))
    row["fresh_ms"] = retime(v, tag, v.path(str(net)) if not net.is_absolute() else net)
    row["fresh_over_t"] = row["fresh_ms"] / target if row["fresh_ms"] else None
    return row


def search_figures(result: dict[str, Any], target: float, rc: int) -> dict[str, Any]:
    rounds = result.get("rounds") or []
    return {
        "target_ms": target,
        "rc": rc,
        "predicted_ms": result.get("predicted_ms"),
        "measured_ms": result.get("measured_ms"),
        "first_round_error": rounds[0].get("error") if rounds else None,
        "last_round_error": rounds[-1].get("error") if rounds else None,
        # the new JSON's own `error`; the old one printed predicted vs measured of its result
        "reported_error": result.get("error")
        if "error" in result
        else error(result.get("predicted_ms"), result.get("measured_ms")),
        "rounds": len(rounds),
        "budget_missed": result.get("budget_missed"),
        "note": result.get("note"),
    }


def retime(v: Version, tag: str, net: Path) -> float | None:
    """The returned network timed afresh into an empty store."""
    if not net.exists():
        return None
    store = v.path(f"search/retime-{tag}.sqlite")
    store.unlink(missing_ok=True)
    report = f"search/retime-{tag}.json"
    args = ["--arch", str(net), "--db", str(store), "--no-ops", "--json", report]
    latkit(v, f"retime-{tag}", "time-network", "--device", DEVICE, *args)
    timed = (read_json(v.path(report)) or {}).get("networks") or [{}]
    return timed[0].get("measured_ms")


def print_searches(versions: list[Version]) -> None:
    rows = []
    for v in versions:
        for s in v.figures.get("searches", []):
            t = s.get("target_ms")
            goal = "0.90-1.00" if s["hard"] else "0.95-1.05"
            rows.append(
                [
                    f"{v.label} {s['tag']}",
                    ms(t),
                    ms(s.get("predicted_ms")),
                    ms(s.get("measured_ms")),
                    ms(s.get("fresh_ms")),
                    f"{s['fresh_over_t']:.3f}" if s.get("fresh_over_t") else "n/a",
                    goal,
                    pct(s.get("first_round_error"), signed=True),
                    pct(s.get("reported_error"), signed=True),
                    str(s.get("rounds", "n/a")),
                    str(s.get("rc", "n/a")),
                ]
            )
    columns = ["search", "T", "predicted", "loop meas.", "fresh", "fresh/T", "goal"]
    columns += ["F err r1", "reported", "rounds", "exit"]
    table("searches (goal: F's first-round error ≤ 5%)", columns, rows)
    for v in versions:
        for s in v.figures.get("searches", []):
            for key in ("budget_missed", "note"):
                if s.get(key):
                    console.print(f"  {v.label} {s['tag']} {key}: {s[key]}", markup=False)


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, help="work folder (default: a fresh temp dir)")
    parser.add_argument("--before", default="7c31b28", help="the revision to compare with")
    parser.add_argument("--before-dir", type=Path, help="default: TMP/latkit-before-REV")
    parser.add_argument("--after", help="a revision to run as after (default: the working tree)")
    parser.add_argument("--quick", action="store_true", help="smoke run: far fewer networks")
    args = parser.parse_args()
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {PARTS}")
    return args


def header(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    hw = hardware()
    after = args.after or f"the working tree of {ROOT}"
    console.print(f"trust bench: before = {args.before}, after = {after}")
    console.print(
        f"hardware: {hw['cpu']}, {hw['logical_cores']} logical cores "
        f"({hw['usable_cores']} usable); {hw['platform']}; python {hw['python']}"
    )
    console.print(f"work folder: {out}; parts: {', '.join(args.parts)}; {load_text()}")
    return hw


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    args = parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="latkit-trust-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started, hw = time.perf_counter(), header(args, out)
    versions = make_versions(args, out)
    check_imports(versions)
    sizes = QUICK if args.quick else FULL
    loads = [os.getloadavg()]
    for part, function in (
        ("readme", part_readme),
        ("tables", part_tables),
        ("search", part_search),
    ):
        if part in args.parts:
            function(versions, sizes)
            loads.append(os.getloadavg())
    summary = {
        "before_rev": args.before,
        "quick": args.quick,
        "hardware": hw,
        "load_at_part_ends": loads,
        "wall_s": time.perf_counter() - started,
        **{v.label: v.figures for v in versions},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(
        f"\ndone in {summary['wall_s'] / 60:.1f} min ({load_text()}); {out / 'summary.json'}"
    )


if __name__ == "__main__":
    main()
