"""How right is F? Whole networks timed on this CPU, extrapolation, published tables, few-shot.

    python bench/predictor_accuracy.py [--quick] [--db PATH] [--device FILE]
        [--prior-device FILE] [--out DIR] [--sections local,extrap,ofa-res,kfold,families,...]

Sections (all by default; every one prints the load average, since the machine is shared):
1. local: the device file (default onnxruntime, 1 thread): profile proxyless-mobile, time
   training and validation networks end to end, then ±5/±10% accuracy, RMSPE, Spearman, Kendall
   and the coverage of the 90% interval of F on the validation networks: F fitted from ops
   (`validate_device`), and F fitted from 20, 50 and 100 whole networks (alone, and as a
   calibration of the op fit). Also the time to query F for every candidate of the supernet,
   and how repeatable a network timing is on this machine now.
2. extrap: families trained on ops with cin <= 96 predict the wider ops (local CPU table and the
   ProxylessNAS phone table); and F fitted on the whole local table predicts the ops of
   ProxylessNAS-Mobile-1.4 (1.4x wider, timed here but never fitted).
3. ofa-res: once-for-all Note10 tables: fit on the even-indexed resolutions, predict the others.
4. kfold: the ProxylessNAS phone table and the once-for-all Note10 tables (17 pooled): 5-fold.
5. families: the model-family comparison on the local table (held-out ops, selection scores).
6. fewshot: few-shot on this CPU. Target torch eager with onnxruntime's op fit as prior, and
   the reverse: F fitted on 10 and 20 whole networks of the target, with and without the prior
   (`latkit fit --networks --train N [--prior REF]`), scored on 200 other networks.
7. predict: `latkit predict` on the three published ProxylessNAS networks (Mobile, CPU, GPU)
   against their whole-network timings stored on this CPU.
Sections 2-4 print every family and `auto`, and the coverage of auto's 90% intervals.

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
from latkit.devices import DeviceConfig, Timing, load_device
from latkit.metrics import coverage, report, rmspe, within
from latkit.ops import OpSpec, detect_dialect, from_key
from latkit.predictors import MODELS, LatencyPredictor, fit_device, fit_networks
from latkit.predictors.fit import predictor_path, stored_networks
from latkit.predictors.models import make_model
from latkit.profilers import get_profiler
from latkit.profilers.base import Profiler, host_model
from latkit.profilers.session import profile_ops, time_network
from latkit.records import arch_id
from latkit.spaces import Network, load_space
from latkit.store import MeasurementStore
from latkit.workflows.predict import predict
from latkit.workflows.validate import validate_device

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
TRIM = DATA / "luts" / "proxylessnas" / "mobile_trim.yaml"
OFA = DATA / "luts" / "ofa-note10"
ARCHS = DATA / "archs" / "proxylessnas"
MOBILE_14 = ARCHS / "proxyless_mobile_14.config"
PUBLISHED = ("proxyless_mobile", "proxyless_cpu", "proxyless_gpu")
#: whole networks are timed with a shorter plan than single ops: a 224x224 network runs
#: ~10 ms, and its ONNX export (~1 s) costs more than the timing itself
NETWORK_TIMING = Timing(warmup=5, runs=15, rounds=3, max_cv=0.05, max_retries=2)
#: the few-shot networks (seeded apart from section 1's) and how many are held out
FEW_SHOT_SEED, FEW_SHOT_TEST, FEW_SHOT_TRAIN = 2, 200, (10, 20)
FAMILIES = tuple(MODELS)
SECTIONS = ("local", "extrap", "ofa-res", "kfold", "families", "fewshot", "predict")
Sample = tuple[tuple[OpSpec, ...], float]


def row(label: str, m: dict[str, float], width: int = 44) -> str:
    cover = f"{m['coverage']:>9.1%}" if "coverage" in m else f"{'':>9}"
    return (
        f"  {label:<{width}} {m['acc5']:>6.1%} {m['acc10']:>7.1%} {m['rmspe']:>7.2f}% "
        f"{m['spearman']:>8.3f} {m['kendall']:>8.3f} {cover}"
    )


def header(width: int = 44) -> str:
    return (
        f"  {'':<{width}} {'±5%':>6} {'±10%':>7} {'RMSPE':>8} {'Spearman':>8} {'Kendall':>8} "
        f"{'covered':>9}"
    )


def load_note(started: tuple[float, float, float]) -> str:
    return (
        f"load average {started[0]:.1f} before, {os.getloadavg()[0]:.1f} after "
        "(2 cores, shared with other jobs)"
    )


def load_table(path: Path) -> tuple[list[OpSpec], np.ndarray]:
    table = yaml.safe_load(path.read_text())
    dialect = "ofa" if any(detect_dialect(k) == "ofa" for k in table) else "proxylessnas"
    return [from_key(k, dialect) for k in table], np.array([v["mean"] for v in table.values()])


def ofa_tables() -> tuple[list[OpSpec], np.ndarray, np.ndarray]:
    """Every op of the 17 Note10 tables, its latency, and its table's index."""
    files = sorted(OFA.glob("*_lookup_table.yaml"), key=lambda p: int(p.name.split("_")[0]))
    ops, y, index = [], [], []
    for i, path in enumerate(files):
        table_ops, table_y = load_table(path)
        ops += table_ops
        y += list(table_y)
        index += [i] * len(table_ops)
    return ops, np.array(y), np.array(index)


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
    profiler: Profiler,
    store: MeasurementStore,
    networks: Sequence[Network],
    label: str,
    origin: str = "bench",
) -> list[Sample]:
    """End-to-end medians, committed one by one (a rerun with --db reuses them); `validate`
    as the `origin` keeps them out of every fit of the store."""
    out = []
    with bar() as progress:
        advance = RichReporter(progress).task(label, len(networks))
        for network in networks:
            stats = time_network(profiler, store, network, origin=origin)
            out.append((tuple(profiler.prepare(network.ops)), stats.median_ms))
            advance(1)
    return out


def network_metrics(predictor: LatencyPredictor, data: list[Sample]) -> dict[str, float]:
    """F against measured networks, with how often its 90% interval held."""
    answers = [predictor.network_answer(ops) for ops, _ in data]
    truth = [t for _, t in data]
    out = report([a.predicted_ms for a in answers], truth)
    out["coverage"] = coverage([a.low_ms for a in answers], [a.high_ms for a in answers], truth)
    return out


def sum_metrics(predict_one: Callable[[Sequence[OpSpec]], float], data: list[Sample]) -> dict:
    return report([predict_one(ops) for ops, _ in data], [t for _, t in data])


@dataclass(frozen=True)
class Scores:
    """(±10%, RMSPE) of every family and of auto on one data set, auto's picks and coverage."""

    cells: dict[str, tuple[float, float]]
    picked: str
    covered: float
    table_hits: int = 0


def family_rows(
    train_ops: list[OpSpec], train_y: np.ndarray, test_ops: list[OpSpec], test_y: np.ndarray
) -> Scores:
    out = {}
    for family in FAMILIES:
        pred = make_model(family).fit(train_ops, train_y).predict(test_ops)
        out[family] = (within(pred, test_y, 0.10), rmspe(pred, test_y))
    auto = LatencyPredictor().fit(train_ops, train_y)
    pred = auto.predict(test_ops)
    out["auto"] = (within(pred, test_y, 0.10), rmspe(pred, test_y))
    low, high = auto.predict_interval(test_ops)
    hits = sum(auto.is_measured(op) for op in test_ops)
    return Scores(out, picks(auto), coverage(low, high, test_y), hits)


def picks(predictor: LatencyPredictor) -> str:
    inside, outside = predictor.meta["family"], predictor.meta["extrapolation_family"]
    return inside if inside == outside else f"{inside} (outside the range: {outside})"


def kfold(ops: list[OpSpec], y: np.ndarray, folds: int = 5) -> Scores:
    """Every family and `auto` (re-selected inside each fold) over the same folds."""
    order = np.random.default_rng(0).permutation(len(ops))
    preds = {f: np.zeros(len(y)) for f in (*FAMILIES, "auto")}
    low, high = np.zeros(len(y)), np.zeros(len(y))
    picked, hits = [], 0
    for part in np.array_split(order, folds):
        train = np.setdiff1d(order, part)
        train_ops, test_ops = [ops[i] for i in train], [ops[i] for i in part]
        for family in FAMILIES:
            preds[family][part] = make_model(family).fit(train_ops, y[train]).predict(test_ops)
        auto = LatencyPredictor().fit(train_ops, y[train])
        preds["auto"][part] = auto.predict(test_ops)
        low[part], high[part] = auto.predict_interval(test_ops)
        picked.append(picks(auto))
        hits += sum(auto.is_measured(op) for op in test_ops)
    cells = {f: (within(p, y, 0.10), rmspe(p, y)) for f, p in preds.items()}
    summary = "; ".join(f"{n}x {p}" for p, n in _counts(picked).items())
    return Scores(cells, summary + " (over the folds)", coverage(low, high, y), hits)


def _counts(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def print_families(columns: dict[str, Scores]) -> None:
    print("  " + f"{'family':<12}" + "".join(f"{c:>26}" for c in columns))
    print("  " + f"{'':<12}" + "".join(f"{'±10%    RMSPE':>26}" for _ in columns))
    for family in (*FAMILIES, "auto"):
        cells = "".join(
            f"{scores.cells[family][0]:>17.1%} {scores.cells[family][1]:>7.2f}%"
            for scores in columns.values()
        )
        print(f"  {family:<12}{cells}")
    gaps = "".join(
        f"{100 * (max(s.cells[f][0] for f in FAMILIES) - s.cells['auto'][0]):>22.1f} pts"
        for s in columns.values()
    )
    print(f"  {'best - auto':<12}{gaps}")
    print(f"  {'90% covers':<12}" + "".join(f"{s.covered:>26.1%}" for s in columns.values()))
    for name, scores in columns.items():
        print(f"  auto kept, {name}: {scores.picked}")
        if scores.table_hits:
            print(
                f"    ({scores.table_hits} held-out ops are also in another table, timed again: "
                "auto answers them from its table; the families alone answer every op)"
            )


@dataclass(frozen=True)
class Local:
    """The local op table (and its fitted predictor) that sections 2 and 5 use."""

    config: DeviceConfig
    ops: list[OpSpec]
    latencies: np.ndarray
    predictor: LatencyPredictor
    comparison: dict[str, dict[str, float]]


def profile_space(config: DeviceConfig, store: MeasurementStore, label: str) -> str:
    """Profile proxyless-mobile on `config` (resumable); a line saying how it went."""
    profiler = get_profiler(config)
    space = load_space("proxyless-mobile")
    with bar() as progress:
        summary = profile_ops(
            profiler,
            space.distinct_ops(),
            store,
            description=label,
            reporter=RichReporter(progress),
        )
    t = config.timing
    return (
        f"profiled {summary.ops} ops of {space.name} on {config.name} ({summary.measured} timed, "
        f"{summary.skipped} already stored; warmup {t.warmup}, runs {t.runs}, rounds {t.rounds})"
        f": median CV {summary.median_cv:.2%}, {summary.wall_s:.0f} s"
    )


def local_table(config: DeviceConfig, store: MeasurementStore, out_dir: Path) -> Local:
    print(profile_space(config, store, f"profiling ops on {config.name}"))
    fitted = fit_device(store, config.name, seed=0, data_dir=out_dir)
    predictor = fitted.predictor
    return Local(
        config,
        list(predictor.table_),
        np.array(list(predictor.table_.values())),
        predictor,
        fitted.comparison,
    )


def section_local(
    args: argparse.Namespace, store: MeasurementStore, out_dir: Path, local: Local
) -> None:
    config = local.config
    space = load_space("proxyless-mobile")
    env = get_profiler(config).environment()
    n_val, n_train = (10, 20) if args.quick else (50, 100)
    print(
        f"\n== 1. {config.name}: {env.runtime} {env.runtime_version}, {config.threads} "
        f"thread(s), {host_model()}, space {space.name} =="
    )
    started = os.getloadavg()
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
    predictor = LatencyPredictor.from_state(local.predictor.to_state())
    predictor.fit_network_terms(train, 0)  # training networks only, whatever else is in --db
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
    print(f"timed {n_train} training + {n_val} validation networks; {load_note(started)}")
    print(
        f"timing repeatability now: {len(repeat)} validation networks re-timed vs their first "
        f"timing: ±5% {floor['acc5']:.0%}, ±10% {floor['acc10']:.0%}, RMSPE {floor['rmspe']:.2f}%"
    )
    print(
        f"F from ops: family {picks(predictor)}, {len(predictor.table_)} table ops, "
        f"network terms {predictor.terms} (fitted on the training networks)"
    )
    print(
        f"validation on {n_val} whole networks (seed 0; {validation.csv_path.name} and "
        f"{validation.png_path.name} in {validation.csv_path.parent}):"
    )
    print(header())
    print(
        row(
            "sum of the op table, no overhead",
            sum_metrics(lambda o: float(predictor.predict(o).sum()), val),
        )
    )
    print(row("F from ops + overhead (latkit validate)", network_metrics(predictor, val)))
    for k in (20, 50, 100):
        if k <= len(train):
            alone, _ = fit_networks(train[:k], test_fraction=0.0, seed=0)
            print(row(f"F from {k} networks alone", network_metrics(alone, val)))
    for k in (20, 50, 100):
        if k <= len(train):
            calibrated, _ = fit_networks(train[:k], test_fraction=0.0, seed=0, base=predictor)
            print(row(f"F from ops, calibrated on {k} networks", network_metrics(calibrated, val)))

    candidates = [op for layer in space.layers() for op in layer.candidates]
    cold = LatencyPredictor.from_state(local.predictor.to_state())
    t0 = time.perf_counter()
    cold.predict(candidates)
    cold_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    cold.predict(candidates)
    warm_ms = (time.perf_counter() - t0) * 1000
    wider = [op.replace(cin=op.cin + 8) for op in candidates if op.type == "mbconv" and not op.skip]
    t0 = time.perf_counter()
    cold.predict(wider)
    model_ms = (time.perf_counter() - t0) * 1000
    print(
        f"query F for all {len(candidates)} supernet candidates: first call {cold_ms:.2f} ms, "
        f"cached {warm_ms:.3f} ms (budget 10 ms); {len(wider)} unprofiled ops through the "
        f"models {model_ms:.2f} ms"
    )


def extrapolation(ops: list[OpSpec], y: np.ndarray) -> Scores:
    train = [i for i, op in enumerate(ops) if op.cin <= 96]
    test = [i for i, op in enumerate(ops) if op.cin > 96]
    return family_rows([ops[i] for i in train], y[train], [ops[i] for i in test], y[test])


def section_extrap(local: Local, phone: tuple[list[OpSpec], np.ndarray]) -> None:
    print("\n== 2. extrapolation: fit on ops with cin <= 96, predict the wider ops ==")
    started = os.getloadavg()
    mobile14 = Network.load(MOBILE_14, batch=local.config.batch_size)
    wide = [op for op in dict.fromkeys(mobile14.ops) if op.type != "zero"]
    wide = [op for op in wide if not local.predictor.is_measured(op)]
    measured: dict[OpSpec, float] = {}
    get_profiler(local.config).measure(
        wide, lambda m: measured.__setitem__(m.op, m.stats.median_ms)
    )
    phone_ops, phone_y = phone
    n_local = sum(op.cin > 96 for op in local.ops)
    n_phone = sum(op.cin > 96 for op in phone_ops)
    print_families(
        {
            f"local CPU ({n_local} ops)": extrapolation(local.ops, local.latencies),
            f"phone table ({n_phone} ops)": extrapolation(phone_ops, phone_y),
            f"Mobile-1.4 ({len(measured)} ops)": family_rows(
                local.ops, local.latencies, list(measured), np.array(list(measured.values()))
            ),
        }
    )
    print(
        "  (Mobile-1.4: fitted on the whole local table, predicting the ops of "
        "ProxylessNAS-Mobile-1.4, 1.4x wider, timed here but never fitted)"
    )
    print(f"  {load_note(started)}")


def section_ofa_resolutions() -> None:
    ops, y, index = ofa_tables()
    even, odd = np.where(index % 2 == 0)[0], np.where(index % 2 == 1)[0]
    print(
        f"\n== 3. once-for-all Note10: fit on the {len(set(index[even]))} even-indexed "
        f"resolutions, predict the other {len(set(index[odd]))} ({len(odd)} ops) =="
    )
    started = os.getloadavg()
    train_ops, test_ops = [ops[i] for i in even], [ops[i] for i in odd]
    print_families({"odd resolutions": family_rows(train_ops, y[even], test_ops, y[odd])})
    print(f"  {load_note(started)}")


def section_kfold(phone: tuple[list[OpSpec], np.ndarray]) -> None:
    phone_ops, phone_y = phone
    ofa_ops, ofa_y, _ = ofa_tables()
    print(
        f"\n== 4. 5-fold cross-validation: the ProxylessNAS phone table ({len(phone_ops)} ops) "
        f"and the 17 once-for-all Note10 tables pooled ({len(ofa_ops)} ops) =="
    )
    started = os.getloadavg()
    print_families(
        {"phone, 5-fold": kfold(phone_ops, phone_y), "Note10, 5-fold": kfold(ofa_ops, ofa_y)}
    )
    print(f"  {load_note(started)}")


def section_families(local: Local) -> None:
    print(
        f"\n== 5. model families on the local CPU table ({len(local.ops)} ops): 20% held out, "
        "and the selection scores on the other 80% =="
    )
    print(
        f"  {'family':<12} {'held-out ±10%':>14} {'RMSPE':>8} {'CV ±10%':>8} {'CV score':>9} "
        f"{'extrap RMSPE':>13}"
    )
    for family, m in local.comparison.items():
        if family == "auto":
            continue
        print(
            f"  {family:<12} {m['acc10']:>14.1%} {m['rmspe']:>7.2f}% {m['cv_acc10']:>8.1%} "
            f"{m['cv_score']:>9.3f} {m['extrap_rmspe']:>12.2f}%"
        )
    auto = local.comparison["auto"]
    best = max(m["acc10"] for f, m in local.comparison.items() if f != "auto")
    print(
        f"  {'auto':<12} {auto['acc10']:>14.1%} {auto['rmspe']:>7.2f}%   (best - auto "
        f"{100 * (best - auto['acc10']):.1f} pts; its 90% intervals cover {auto['coverage']:.1%})"
    )
    print(
        f"  kept on all rows: {picks(local.predictor)} (inside the range: lowest CV score = "
        "share outside ±10% + capped mean error / 10; outside: lowest RMSPE with the widest "
        "fifth held out)"
    )


def section_fewshot(
    args: argparse.Namespace, store: MeasurementStore, out_dir: Path, configs: list[DeviceConfig]
) -> None:
    space = load_space("proxyless-mobile")
    n_test = 40 if args.quick else FEW_SHOT_TEST
    n_train = max(FEW_SHOT_TRAIN)
    print(
        f"\n== 6. few-shot on this CPU: {n_train + n_test} {space.name} networks (seed "
        f"{FEW_SHOT_SEED}); fit on the first 10 or 20 of one runtime, score on the other "
        f"{n_test}, with and without the other runtime's op-table F as --prior =="
    )
    started = os.getloadavg()
    networks = [n for _, n in space.sample_networks(n_train + n_test, seed=FEW_SHOT_SEED)]
    priors, timed = {}, {}
    for config in configs:
        print(profile_space(config, store, f"profiling ops on {config.name}"))
        priors[config.name] = fit_device(store, config.name, seed=0, data_dir=out_dir).predictor
        fast = get_profiler(config.model_copy(update={"timing": NETWORK_TIMING}))
        label = f"timing {len(networks)} networks on {config.name}"
        timed[config.name] = time_networks(fast, store, networks, label)
    print(header(52))
    for target, prior in ((configs[1], configs[0]), (configs[0], configs[1])):
        data = timed[target.name]
        train, test = data[:n_train], data[n_train:]
        base = priors[prior.name]
        print(f"  target {target.name} ({target.runtime}), prior {prior.name} ({prior.runtime}):")
        print(
            row(
                "prior's own F, unscaled (no target timing)",
                sum_metrics(base.predict_network, test),
                52,
            )
        )
        for k in FEW_SHOT_TRAIN:
            alone, _ = fit_networks(train[:k], test_fraction=0.0, seed=0, device=target.name)
            print(row(f"{k} networks, no prior", network_metrics(alone, test), 52))
            transfer, _ = fit_networks(
                train[:k], test_fraction=0.0, seed=0, base=base, device=target.name
            )
            print(row(f"{k} networks, --prior {prior.name}", network_metrics(transfer, test), 52))
        own = priors[target.name]
        print(
            row("F from the target's own op table (full profile)", network_metrics(own, test), 52)
        )
    print(f"  {load_note(started)}")


def section_predict(store: MeasurementStore, out_dir: Path, config: DeviceConfig) -> None:
    print(
        f"\n== 7. latkit predict on the three published ProxylessNAS networks, against their "
        f"whole-network timings stored on {config.name} =="
    )
    started = os.getloadavg()
    fast = get_profiler(config.model_copy(update={"timing": NETWORK_TIMING}))
    archs = [ARCHS / f"{name}.config" for name in PUBLISHED]
    published = [Network.load(a, batch=config.batch_size) for a in archs]
    # F from ops, its overhead and network interval fitted on the other stored networks only
    fitted = fit_device(store, config.name, seed=0, data_dir=out_dir)
    predictor = fitted.predictor
    unseen = {arch_id(fast.prepare(n.ops)) for n in published}
    # networks are timed with their own plan, so they live in the network profiler's environment
    env_id = fast.environment().env_id
    others = [s for s in stored_networks(store, config.name, env_id) if arch_id(s[0]) not in unseen]
    predictor.fit_network_terms(others, 0)
    predictor.save(predictor_path(config.name, out_dir))
    truth = [ms for _, ms in time_networks(fast, store, published, "timing the published networks")]
    print(
        f"  latkit predict --device {config.source} --db {store.path} --data-dir {out_dir} "
        + " ".join(f"--arch {a.relative_to(ROOT)}" for a in archs)
    )
    print(
        f"  (F from ops: {picks(predictor)}; overhead and network interval from the "
        f"{len(others)} other networks stored on {config.name}, never from these three)"
    )
    answers = predict(config, archs, db=store.path, data_dir=out_dir)
    print(
        f"  {'network':<18} {'predicted':>10} {'90% interval':>20} {'measured':>9} {'error':>7} "
        f"{'table/model ops':>16}"
    )
    for a, measured in zip(answers, truth):
        sources = [op.source for op in a.ops if op.source not in ("zero", "networks")]
        table = sum(s == "table" for s in sources)
        interval = (
            f"{a.low_ms:>8.3f} .. {a.high_ms:>6.3f}ms"
            if a.low_ms is not None
            else f"{'unbounded':>20}"
        )
        print(
            f"  {a.name:<18} {a.predicted_ms:>8.3f}ms {interval} "
            f"{measured:>7.3f}ms {100 * (a.predicted_ms / measured - 1):>+6.1f}% "
            f"{table:>8}/{len(sources) - table}"
        )
    inside = sum(
        a.low_ms is not None and a.low_ms <= m <= a.high_ms for a, m in zip(answers, truth)
    )
    print(
        f"  measured inside the 90% interval: {inside} of {len(answers)} ({answers[0].interval_source} calibration)"
    )
    print(f"  {load_note(started)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer networks in sections 1, 6")
    parser.add_argument("--db", type=Path, help="reuse this store (default: a temporary one)")
    parser.add_argument("--device", default=str(ROOT / "device_configs" / "local-cpu.yaml"))
    parser.add_argument(
        "--prior-device",
        default=str(ROOT / "device_configs" / "local-cpu-torch.yaml"),
        help="the other runtime of the few-shot section",
    )
    parser.add_argument("--out", type=Path, help="predictor, CSV and plot folder (default: temp)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset")
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}: {', '.join(SECTIONS)}")
    started = time.perf_counter()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores, shared with other jobs)")
    phone = load_table(TRIM)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp) / "data"
        with MeasurementStore(args.db or Path(tmp) / "bench.sqlite") as store:
            config = load_device(args.device)
            local = None
            if {"local", "extrap", "families"} & set(sections):
                local = local_table(config, store, out_dir)
            if "local" in sections:
                section_local(args, store, out_dir, local)
            if "extrap" in sections:
                section_extrap(local, phone)
            if "ofa-res" in sections:
                section_ofa_resolutions()
            if "kfold" in sections:
                section_kfold(phone)
            if "families" in sections:
                section_families(local)
            if "fewshot" in sections:
                section_fewshot(args, store, out_dir, [config, load_device(args.prior_device)])
            if "predict" in sections:
                section_predict(store, out_dir, config)
    print(f"\ntotal {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
