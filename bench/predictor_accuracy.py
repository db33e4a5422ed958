"""How right is F? Whole networks timed on this CPU, extrapolation, and published tables.

    python bench/predictor_accuracy.py [--quick] [--db PATH] [--device FILE] [--out DIR]

Prints:
1. local CPU (the device file, default onnxruntime 1 thread): profile proxyless-mobile, time
   training and validation networks end to end, then ±5/±10% accuracy, RMSPE and Spearman of F on
   the validation networks: F fitted from ops (`validate_device`), and F fitted from 20, 50 and
   100 whole networks (alone, and as a calibration of the op fit). Also the time to query F for
   every candidate of the supernet, and how repeatable a network timing is on this machine now.
2. extrapolation: families trained on ops with cin <= 96 predict the wider ops (local CPU table
   and the ProxylessNAS phone table); and F fitted on the whole local table predicts the ops of
   ProxylessNAS-Mobile-1.4 (1.4x wider, timed here but never fitted).
3. once-for-all Note10 tables: fit on the even-indexed resolutions, predict the others.
4. the ProxylessNAS phone table: 5-fold cross-validation.
5. the model-family comparison on the local table (held-out ops and the selection scores).

The store is a temporary file unless --db is given (then timings are reused on a rerun).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from latkit.cli.output import RichReporter
from latkit.devices import Timing, load_device
from latkit.metrics import report, rmspe, within
from latkit.ops import OpSpec, detect_dialect, from_key
from latkit.predictors import MODELS, LatencyPredictor, fit_device, fit_networks
from latkit.predictors.models import make_model
from latkit.profilers import get_profiler
from latkit.profilers.base import Profiler, host_model
from latkit.profilers.session import profile_ops, time_network
from latkit.spaces import Network, load_space
from latkit.store import MeasurementStore
from latkit.workflows.validate import validate_device

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
TRIM = DATA / "luts" / "proxylessnas" / "mobile_trim.yaml"
OFA = DATA / "luts" / "ofa-note10"
MOBILE_14 = DATA / "archs" / "proxylessnas" / "proxyless_mobile_14.config"
#: whole networks are timed with a shorter plan than single ops: a 224x224 network runs
#: ~10 ms, and its ONNX export (~1 s) costs more than the timing itself
NETWORK_TIMING = Timing(warmup=5, runs=15, rounds=3, max_cv=0.05, max_retries=2)
FAMILIES = tuple(MODELS)
Sample = tuple[tuple[OpSpec, ...], float]


def row(label: str, m: dict[str, float], width: int = 44) -> str:
    return (
        f"  {label:<{width}} {m['acc5']:>6.1%} {m['acc10']:>7.1%} {m['rmspe']:>7.2f}% "
        f"{m['spearman']:>8.3f}"
    )


def header(width: int = 44) -> str:
    return f"  {'':<{width}} {'±5%':>6} {'±10%':>7} {'RMSPE':>8} {'Spearman':>8}"


def load_table(path: Path) -> tuple[list[OpSpec], np.ndarray]:
    table = yaml.safe_load(path.read_text())
    dialect = "ofa" if any(detect_dialect(k) == "ofa" for k in table) else "proxylessnas"
    return [from_key(k, dialect) for k in table], np.array([v["mean"] for v in table.values()])


def bar() -> Progress:
    """A progress bar on stderr, gone when done, so stdout holds only the figures."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def time_networks(
    profiler: Profiler, store: MeasurementStore, networks: Sequence[Network], label: str
) -> list[Sample]:
    """End-to-end medians, committed one by one (a rerun with --db reuses them)."""
    out = []
    with bar() as progress:
        advance = RichReporter(progress).task(label, len(networks))
        for network in networks:
            stats = time_network(profiler, store, network, origin="bench")
            out.append((tuple(profiler.prepare(network.ops)), stats.median_ms))
            advance(1)
    return out


def network_metrics(predict: Callable[[Sequence[OpSpec]], float], data: list[Sample]) -> dict:
    return report([predict(ops) for ops, _ in data], [t for _, t in data])


Scores = dict[str, tuple[float, float]]


def family_rows(
    train_ops: list[OpSpec], train_y: np.ndarray, test_ops: list[OpSpec], test_y: np.ndarray
) -> tuple[Scores, str]:
    """(±10% accuracy, RMSPE) of every family and of `auto`, and the family `auto` picked."""
    out = {}
    for family in FAMILIES:
        pred = make_model(family).fit(train_ops, train_y).predict(test_ops)
        out[family] = (within(pred, test_y, 0.10), rmspe(pred, test_y))
    auto = LatencyPredictor().fit(train_ops, train_y)
    pred = auto.predict(test_ops)
    out["auto"] = (within(pred, test_y, 0.10), rmspe(pred, test_y))
    return out, auto.meta["family"]


def print_families(columns: dict[str, tuple[Scores, str]]) -> None:
    print("  " + f"{'family':<12}" + "".join(f"{c:>26}" for c in columns))
    print("  " + f"{'':<12}" + "".join(f"{'±10%    RMSPE':>26}" for _ in columns))
    for family in (*FAMILIES, "auto"):
        cells = "".join(
            f"{scores[family][0]:>17.1%} {scores[family][1]:>7.2f}%"
            for scores, _ in columns.values()
        )
        print(f"  {family:<12}{cells}")
    print("  auto picks: " + ", ".join(f"{c}: {picked}" for c, (_, picked) in columns.items()))


def section_local(args: argparse.Namespace, store: MeasurementStore, out_dir: Path) -> Local:
    config = load_device(args.device)
    space = load_space("proxyless-mobile")
    profiler = get_profiler(config)
    env = profiler.environment()
    n_val, n_train = (10, 20) if args.quick else (50, 100)
    print(
        f"== 1. {config.name}: {env.runtime} {env.runtime_version}, {config.threads} thread(s), "
        f"{host_model()}, space {space.name} =="
    )
    load_before = os.getloadavg()
    with bar() as progress:
        summary = profile_ops(
            profiler,
            space.distinct_ops(),
            store,
            description="profiling ops",
            reporter=RichReporter(progress),
        )
    print(
        f"profiled {summary.ops} ops ({summary.measured} timed, {summary.skipped} already stored; "
        f"warmup {config.timing.warmup}, runs {config.timing.runs}, rounds {config.timing.rounds})"
        f": median CV {summary.median_cv:.2%}, {summary.wall_s:.0f} s"
    )
    fast = get_profiler(config.model_copy(update={"timing": NETWORK_TIMING}))
    train_nets = [n for _, n in space.sample_networks(n_train, seed=1)]
    val_nets = [n for _, n in space.sample_networks(n_val, seed=0)]
    probe = time.perf_counter()
    first = time_networks(fast, store, train_nets[:2], "timing 2 networks for the estimate")
    each = (time.perf_counter() - probe) / len(first)
    t = NETWORK_TIMING
    print(
        f"network timing plan: {t.rounds} rounds x ({t.warmup} warmup + {t.runs} timed) runs of "
        f"~10 ms plus ~1 s ONNX export and session per network; measured {each:.1f} s per "
        f"network -> {n_train + n_val} networks ~ {each * (n_train + n_val) / 60:.1f} min"
    )
    train = time_networks(fast, store, train_nets, f"timing {n_train} training networks")
    fitted = fit_device(store, config.name, seed=0, data_dir=out_dir)
    predictor = fitted.predictor
    predictor.fit_overhead(train)  # training networks only, whatever else is in --db
    with bar() as progress:
        validation = validate_device(
            fast,
            predictor,
            space,
            n=n_val,
            seed=0,
            store=store,
            out_dir=out_dir / config.name,
            reporter=RichReporter(progress),
            description=f"validate: timing {n_val} networks",
        )
    assert [n.name for n in val_nets] == [r["name"] for r in validation.rows]
    val = [
        (tuple(fast.prepare(n.ops)), r["measured_ms"]) for n, r in zip(val_nets, validation.rows)
    ]
    repeat = val_nets[: min(10, n_val)]
    again = [fast.measure_network(n).stats.median_ms for n in repeat]
    floor = report(again, [t for _, t in val[: len(repeat)]])
    print(
        f"timed {n_train} training + {n_val} validation networks; load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores, shared)"
    )
    print(
        f"timing repeatability now: {len(repeat)} validation networks re-timed vs their first "
        f"timing: ±5% {floor['acc5']:.0%}, ±10% {floor['acc10']:.0%}, RMSPE {floor['rmspe']:.2f}%"
    )
    print(
        f"F from ops: family {predictor.meta['family']}, {len(predictor.table_)} table ops, "
        f"overhead {predictor.overhead_ms:.3f} ms per network, {predictor.per_op_ms:.4f} ms per op "
        "(Theil-Sen over the training networks)"
    )
    print(
        f"validation on {n_val} whole networks (seed 0; {validation.csv_path.name} and "
        f"{validation.png_path.name} in {validation.csv_path.parent}):"
    )
    print(header())
    print(
        row(
            "sum of the op table, no overhead",
            network_metrics(lambda o: float(predictor.predict(o).sum()), val),
        )
    )
    print(row("F from ops + overhead (latkit validate)", validation.metrics))
    for k in (20, 50, 100):
        if k > len(train):
            continue
        alone, _ = fit_networks(train[:k], test_fraction=0.0, seed=0)
        print(row(f"F from {k} networks alone", network_metrics(alone.predict_network, val)))
    for k in (20, 50, 100):
        if k > len(train):
            continue
        calibrated, _ = fit_networks(train[:k], test_fraction=0.0, seed=0, base=predictor)
        print(
            row(
                f"F from ops, calibrated on {k} networks",
                network_metrics(calibrated.predict_network, val),
            )
        )

    candidates = [op for layer in space.layers() for op in layer.candidates]
    cold = LatencyPredictor.load(fitted.path)
    t = time.perf_counter()
    cold.predict(candidates)
    cold_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    cold.predict(candidates)
    warm_ms = (time.perf_counter() - t) * 1000
    wider = [op.replace(cin=op.cin + 8) for op in candidates if op.type == "mbconv" and not op.skip]
    t = time.perf_counter()
    cold.predict(wider)
    model_ms = (time.perf_counter() - t) * 1000
    print(
        f"query F for all {len(candidates)} supernet candidates: first call {cold_ms:.2f} ms, "
        f"cached {warm_ms:.3f} ms (budget 10 ms); {len(wider)} unprofiled ops through the "
        f"{cold.meta['family']} model {model_ms:.2f} ms"
    )

    mobile14 = Network.load(MOBILE_14, batch=config.batch_size)
    wide = [op for op in dict.fromkeys(mobile14.ops) if op.type != "zero"]
    wide = [op for op in wide if not predictor.is_measured(op)]
    measured: dict[OpSpec, float] = {}
    profiler.measure(wide, lambda m: measured.__setitem__(m.op, m.stats.median_ms))
    return Local(
        ops=list(predictor.table_),
        latencies=np.array(list(predictor.table_.values())),
        wide_ops=list(measured),
        wide_latencies=np.array(list(measured.values())),
        predictor=predictor,
        comparison=fitted.comparison,
    )


@dataclass(frozen=True)
class Local:
    """What section 1 leaves for the others: the local op table and the Mobile-1.4 ops."""

    ops: list[OpSpec]
    latencies: np.ndarray
    wide_ops: list[OpSpec]
    wide_latencies: np.ndarray
    predictor: LatencyPredictor
    comparison: dict[str, dict[str, float]]


def extrapolation(ops: list[OpSpec], y: np.ndarray) -> tuple[Scores, str]:
    train = [i for i, op in enumerate(ops) if op.cin <= 96]
    test = [i for i, op in enumerate(ops) if op.cin > 96]
    return family_rows([ops[i] for i in train], y[train], [ops[i] for i in test], y[test])


def kfold(ops: list[OpSpec], y: np.ndarray, folds: int = 5) -> tuple[Scores, str]:
    """Every family and `auto` (re-picked inside each fold) over the same folds."""
    order = np.random.default_rng(0).permutation(len(ops))
    preds = {f: np.zeros(len(y)) for f in (*FAMILIES, "auto")}
    picked = []
    for part in np.array_split(order, folds):
        train_ops, train_y = (
            [ops[i] for i in np.setdiff1d(order, part)],
            y[np.setdiff1d(order, part)],
        )
        test_ops = [ops[i] for i in part]
        for family in FAMILIES:
            preds[family][part] = make_model(family).fit(train_ops, train_y).predict(test_ops)
        auto = LatencyPredictor().fit(train_ops, train_y)
        preds["auto"][part] = auto.predict(test_ops)
        picked.append(auto.meta["family"])
    scores = {f: (within(p, y, 0.10), rmspe(p, y)) for f, p in preds.items()}
    return scores, "/".join(picked) + " (per fold)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 validation, 20 training networks")
    parser.add_argument("--db", type=Path, help="reuse this store (default: a temporary one)")
    parser.add_argument("--device", default=str(ROOT / "device_configs" / "local-cpu.yaml"))
    parser.add_argument("--out", type=Path, help="predictor, CSV and plot folder (default: temp)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp) / "data"
        with MeasurementStore(args.db or Path(tmp) / "bench.sqlite") as store:
            local = section_local(args, store, out_dir)

        phone_ops, phone_y = load_table(TRIM)
        print("\n== 2. extrapolation: fit on ops with cin <= 96, predict the wider ops ==")
        n_local = sum(op.cin > 96 for op in local.ops)
        n_phone = sum(op.cin > 96 for op in phone_ops)
        print_families(
            {
                f"local CPU ({n_local} ops)": extrapolation(local.ops, local.latencies),
                f"phone table ({n_phone} ops)": extrapolation(phone_ops, phone_y),
                f"Mobile-1.4 ({len(local.wide_ops)} ops)": family_rows(
                    local.ops, local.latencies, local.wide_ops, local.wide_latencies
                ),
            }
        )
        print(
            "  (Mobile-1.4: fitted on the whole local table, predicting the ops of "
            "ProxylessNAS-Mobile-1.4, 1.4x wider, timed here but never fitted)"
        )

        files = sorted(OFA.glob("*_lookup_table.yaml"), key=lambda p: int(p.name.split("_")[0]))
        split: dict[bool, tuple[list[OpSpec], list[float]]] = {True: ([], []), False: ([], [])}
        for i, path in enumerate(files):
            ops, y = load_table(path)
            split[i % 2 == 0][0].extend(ops)
            split[i % 2 == 0][1].extend(y)
        res = [p.name.split("_")[0] for p in files]
        (train_ops, train_y), (test_ops, test_y) = split[True], split[False]
        print(
            f"\n== 3. once-for-all Note10: fit on the {len(res[::2])} even-indexed resolutions "
            f"({', '.join(res[::2])}), predict the other {len(res[1::2])} ({len(test_ops)} ops) =="
        )
        print_families(
            {
                "odd resolutions": family_rows(
                    train_ops, np.array(train_y), test_ops, np.array(test_y)
                )
            }
        )

        print(
            f"\n== 4. ProxylessNAS phone table ({len(phone_ops)} ops): 5-fold cross-validation =="
        )
        print_families({"5-fold": kfold(phone_ops, phone_y)})

        print(
            f"\n== 5. model families on the local CPU table ({len(local.ops)} ops): 20% held out, "
            "and the selection scores on the other 80% =="
        )
        print(
            f"  {'family':<12} {'held-out ±10%':>14} {'RMSPE':>8} {'CV RMSPE':>9} "
            f"{'extrap RMSPE':>13} {'score':>7}"
        )
        for family, m in local.comparison.items():
            print(
                f"  {family:<12} {m['acc10']:>14.1%} {m['rmspe']:>7.2f}% {m['cv_rmspe']:>8.2f}% "
                f"{m['extrap_rmspe']:>12.2f}% {m['score']:>7.2f}"
            )
        print(
            f"  kept: {local.predictor.meta['family']} (lowest score = mean of the 5-fold CV "
            "RMSPE and the RMSPE with the widest fifth held out)"
        )
    print(f"\ntotal {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
