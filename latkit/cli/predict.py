"""Predictor commands: fit F, validate it on whole networks, predict networks, import and export
latency tables."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from latkit.cli.app import (
    DB_HELP,
    DEFAULT_DB,
    Db,
    ImportDevice,
    Space,
    StoredDevice,
    TimedDevice,
    app,
    json_option,
    open_store,
    require_config,
    resolve_device,
    writable_dir,
    writable_file,
)
from latkit.cli.graphs import (
    AllowUnmapped,
    InputShape,
    OnnxFiles,
    onnx_input_shape,
    warn_unmapped,
)
from latkit.cli.output import console, err_console, labelled, print_fields, reporting, shown
from latkit.devices import device_name, is_device_file
from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.ops import MAX_RESOLUTION
from latkit.workflows.defaults import MAX_SEED

if TYPE_CHECKING:
    from latkit.predictors import LatencyPredictor
    from latkit.workflows.transfer import TransferFit

DATA_HELP = "Folder for predictors and reports (the predictor goes to `DATA_DIR/<device>/`)."
NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")  # as a device file's `name`
#: more networks than anyone times or fits on: a larger count is a typo
MAX_NETWORKS = 100_000

#: where fitted predictors are read (and, by `fit` and `validate`, written)
DataDir = Annotated[Path, typer.Option("--data-dir", help=DATA_HELP)]
WritableDataDir = Annotated[Path, typer.Option("--data-dir", help=DATA_HELP, callback=writable_dir)]
TestFraction = Annotated[
    float,
    typer.Option(
        "--test-fraction",
        min=0.0,
        max=0.9,
        help="Share of rows (or networks) held out for the printed metrics.",
    ),
]
FitSeed = Annotated[
    int,
    typer.Option(
        "--seed", min=0, max=MAX_SEED, help="Seeds the held-out split and the model fitting."
    ),
]
NetworkTimings = Annotated[
    Path | None,
    typer.Option(
        "--networks",
        help=(
            'Fit from whole-network timings instead: a JSONL file, one {"ops": [...], '
            '"latency_ms": x} per line, the ops as op spec dicts or table keys. --device may '
            "then be a new name: the device is created (it has no device file)."
        ),
    ),
]
Train = Annotated[
    int | None,
    typer.Option(
        "--train",
        min=2,
        max=MAX_NETWORKS,
        help="With --networks: fit on N networks picked at random (seeded) and score all the "
        "others (few-shot: 10 or 20 timings scored on hundreds); replaces --test-fraction.",
    ),
]
Prior = Annotated[
    str | None,
    typer.Option(
        "--prior",
        help="With --networks: an already fitted device (name or device file) as prior "
        "knowledge: F = scale x its predictor + corrections, fitted on the networks.",
    ),
]
Calibrate = Annotated[
    bool,
    typer.Option(
        "--calibrate",
        help="With --networks: start from the op-table fit of this device's rows in --db and "
        "correct it with the networks, instead of fitting from the networks alone.",
    ),
]
Transfer = Annotated[
    bool,
    typer.Option(
        "--transfer",
        help="Few-shot: fit from the device's own few whole-network timings in --db (`latkit "
        "profile --networks N`, `latkit import-networks`) and every other device of their "
        "space there, profiled or imported; prints each device's share and the leave-one-out "
        "accuracy.",
    ),
]
TransferSpace = Annotated[
    str | None,
    typer.Option(
        "--space",
        help="With --transfer: the space of the device's networks (name or YAML); by default "
        "the built-in space holding all their ops.",
    ),
]
FitJson = Annotated[Path | None, json_option("the held-out metrics (with interval coverage)")]
PredictArchs = Annotated[
    list[Path],
    typer.Option(
        "--arch",
        help="A network: ProxylessNAS net.config, once-for-all MobileNetV3 config, or "
        'once-for-all subnet choices {"ks": [...], "e": [...], "d": [...], "r": [224]}; '
        "repeatable.",
    ),
]
PredictNetworks = Annotated[
    Path | None,
    typer.Option(
        "--networks",
        help='Networks as in `latkit fit --networks`: one {"ops": [...]} per line '
        '(latency_ms, if present, is shown as measured; "name" names the line).',
    ),
]
ShowOps = Annotated[
    bool,
    typer.Option(
        "--ops",
        help="Also show each op's latency and share, and whether the device's "
        "table measured it or F's model answered.",
    ),
]
SubnetSpace = Annotated[
    str,
    typer.Option("--space", help="Space that once-for-all subnet choices refer to (name or YAML)."),
]
Resolution = Annotated[
    int | None,
    typer.Option(
        "--resolution",
        min=1,
        max=MAX_RESOLUTION,
        help="Input size for configs that do not give one.",
    ),
]
PredictDb = Annotated[
    str, typer.Option("--db", help=DB_HELP + " Stored end-to-end timings are shown.")
]
PredictJson = Annotated[Path | None, json_option("one entry per network, in input order,")]
Networks = Annotated[
    int,
    typer.Option("--networks", min=1, max=MAX_NETWORKS, help="How many random networks."),
]
SampleSeed = Annotated[
    int,
    typer.Option("--seed", min=0, max=MAX_SEED, help="Seeds which architectures are sampled."),
]
ValidateJson = Annotated[Path | None, json_option("n and the metrics")]
LutFile = Annotated[Path, typer.Argument(help="ProxylessNAS or once-for-all YAML latency table.")]
LutFormat = Annotated[
    str,
    typer.Option("--format", help="proxylessnas (expand = ratio, var) or ofa (expand = mid, std)."),
]
LutOut = Annotated[Path, typer.Option("--out", help="YAML file to write.", callback=writable_file)]
CsvFile = Annotated[Path, typer.Argument(help="CSV: op spec columns plus latency_ms or median_ms.")]
NetsFile = Annotated[
    Path,
    typer.Argument(
        help='JSONL: one {"ops": [...], "latency_ms": x} per line, as `latkit fit --networks` '
        "reads it."
    ),
]


def _metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    coverage = any("coverage" in m for m in rows.values())
    columns = ("", "±5%", "±10%", "RMSPE", "Spearman", "Kendall", "90% interval covers")
    for col in columns if coverage else columns[:-1]:
        table.add_column(col, justify="right")
    for label, m in rows.items():
        if "acc10" not in m:
            continue
        cells = [
            label,
            f"{m['acc5']:.1%}",
            f"{m['acc10']:.1%}",
            f"{m['rmspe']:.2f}%",
            f"{m['spearman']:.3f}",
            f"{m['kendall']:.3f}",
        ]
        if coverage:
            cells.append(f"{m['coverage']:.1%}" if "coverage" in m else "")
        table.add_row(*cells)
    return table


def _import_target(value: str, store):
    """The device rows are imported under: a device file's config (given, or registered for a
    name the store knows, so that its batch size holds), or a (new) plain name. Not registered
    here: the import registers it once the file has been read and checked."""
    return _network_target(value, store)[0]


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        err_console.print(labelled("warning: ", "yellow", str(w.message)), soft_wrap=True)


@app.command()
def fit(
    ctx: typer.Context,
    device: StoredDevice,
    db: Db = DEFAULT_DB,
    test_fraction: TestFraction = 0.2,
    seed: FitSeed = 0,
    networks: NetworkTimings = None,
    train: Train = None,
    prior: Prior = None,
    calibrate: Calibrate = False,
    transfer: Transfer = False,
    space: TransferSpace = None,
    data_dir: WritableDataDir = Path("data"),
    json_out: FitJson = None,
) -> None:
    """Fit the device's latency predictor F(op) and print held-out accuracy.

    From op rows (the default): every measured op becomes a table entry (an exact hit returns the
    measured value), and the model families, compared on the same splits of the rows, answer for
    every other op: the best on random folds inside the profiled range, the best with the widest
    ops, largest inputs and largest kernels held out outside it. Whole-network timings already in
    the store (never validate's) set what a network pays beyond its ops, per space, and
    calibrate the network interval (CV+).

    From networks (--networks): network = sum of F(op) + overhead, fitted by least squares with a
    per-op cost model, so F generalises to op combinations never timed together; with --prior
    or --calibrate, around an existing predictor.

    By transfer (--transfer), for a device timed on a few whole networks only: F is a mix of
    the other devices' F, fitted on those networks; the accuracy and the interval come from
    networks left out of the fit one at a time.

    Every answer of F comes with a 90% interval (conformal on residuals used neither to fit nor
    to choose the model); the printed coverage is how often it held on the held-out rows or
    networks.
    """
    from latkit.predictors import predictor_path

    # (typer carries its own click, so its ParameterSource is matched by name)
    given_fraction = ctx.get_parameter_source("test_fraction").name != "DEFAULT"
    split = test_fraction if given_fraction else None
    if _check_transfer(transfer, space, networks, calibrate, prior, train, split):
        _fit_transfer(device, db, space, seed, data_dir, json_out)
        return
    if networks is None and (calibrate or train is not None or prior is not None):
        raise LatkitError("--calibrate, --train and --prior need --networks NETS.jsonl")
    if calibrate and prior is not None:
        raise LatkitError("--calibrate and --prior both set the prior: give one")
    with open_store(db) as store:
        new = False
        if networks is None:
            resolved = resolve_device(device, store)
            name = device_name(resolved)
            result = _fit_ops(store, name, test_fraction, seed, data_dir)
        else:
            resolved, new = _network_target(device, store)
            name = device_name(resolved)
            samples = _network_samples(resolved, networks)
            base = _prior(store, name, prior, calibrate, seed, data_dir)
            result = _fit_networks(resolved, samples, base, test_fraction, train, seed)
            result.predictor.save(predictor_path(name, data_dir))
        # only once fitted: a bad input never leaves a device behind, and the name alone finds it
        store.register_device(resolved)
        if new:
            _say_new_device(name, store)
    _print_fit(result, name, data_dir, json_out)


def _print_fit(result: _Fitted, name: str, data_dir: Path, json_out: Path | None) -> None:
    """What `latkit fit` prints: where F went, the held-out metrics (per model family where
    they were compared), the calibration networks' CV+; and the `--json` payload."""
    from latkit.predictors import predictor_path

    predictor = result.predictor
    print_fields(
        [
            f"fitted {name}:",
            f"family {predictor.meta.get('family')},",
            f"{result.n_train} training / {result.n_test} held-out {result.unit},",
            f"-> {shown(predictor_path(name, data_dir))}",
        ],
        sep=" ",
    )
    if result.test and result.comparison:
        family = predictor.meta["family"]
        rows = {(f"{f} (kept)" if f == family else f): m for f, m in result.comparison.items()}
        console.print(_metrics_table(f"held-out {result.unit} per model family", rows))
    elif result.test:
        console.print(
            _metrics_table(f"held-out {result.unit}", {predictor.meta["family"]: result.test})
        )
    groups = predictor.meta.get("network_cv", {})
    if groups:
        rows = {f"{key} ({m['n']})": m for key, m in groups.items()}
        console.print(_metrics_table("calibration networks, each held out (CV+)", rows))
    if json_out:
        write_json(
            json_out,
            {
                "device": name,
                "source": result.unit,
                "family": predictor.meta.get("family"),
                "prior": predictor.meta.get("prior"),
                "n_train": result.n_train,
                "n_test": result.n_test,
                "interval_level": predictor.level,
                "test": result.test,
                "networks": groups,
            },
        )


def _check_transfer(
    transfer: bool,
    space: str | None,
    networks: Path | None,
    calibrate: bool,
    prior: str | None,
    train: int | None,
    test_fraction: float | None,
) -> bool:
    """Whether `fit` runs a transfer fit; an error for an option that does not go with it
    (`test_fraction`: None unless given: leave-one-out chooses what a transfer holds out)."""
    if not transfer:
        if space is not None:
            raise LatkitError("--space names the space of a --transfer fit: add --transfer")
        return False
    given = {"--networks": networks, "--calibrate": calibrate or None}
    given.update({"--prior": prior, "--train": train, "--test-fraction": test_fraction})
    clash = [option for option, value in given.items() if value is not None]
    if clash:
        raise LatkitError(
            f"--transfer fits from the networks stored in --db and the other devices there; "
            f"it takes no {', '.join(clash)}"
        )
    return True


def _fit_transfer(
    device: str, db: str, space: str | None, seed: int, data_dir: Path, json_out: Path | None
) -> None:
    """`fit --transfer`: F from the device's few stored networks and the other devices of their
    space (`fit_device_transfer`), printed and saved."""
    from latkit.spaces import load_space
    from latkit.workflows.transfer import fit_device_transfer

    chosen = load_space(space) if space is not None else None
    with open_store(db) as store:
        name = device_name(resolve_device(device, store))
        result = fit_device_transfer(store, name, space=chosen, data_dir=data_dir, seed=seed)
    _print_transfer(result)
    if json_out:
        write_json(json_out, result.to_json())


def _print_transfer(result: TransferFit) -> None:
    """Where F went, the devices it draws on with their shares, the leave-one-out figures, the
    notes on what so few networks cannot support, and the model chosen."""
    report = result.report
    print_fields(
        [
            f"fitted {result.predictor.device}:",
            f"transfer from {len(result.sources)} device(s)",
            f"on {report.n_networks} networks of {result.space},",
            f"-> {shown(result.path)}",
        ],
        sep=" ",
    )
    table = Table(title="devices drawn on (share: of what they add to a network)")
    for col in ("device", "its F fitted on", "batch", "share"):
        table.add_column(col, justify="left" if col == "device" else "right")
    for source in result.sources:
        share = report.shares.get(source.name)
        cell = "-" if share is None else f"{share:.1%}"
        table.add_row(source.name, source.fitted_on, str(source.batch), cell)
    console.print(table)
    title = f"each of {report.n_networks} networks left out of the fit"
    console.print(_metrics_table(title, {"networks": report.held_out}))
    for note in report.notes:
        console.print(labelled("note: ", "yellow", note), soft_wrap=True)
    console.print(f"model: {report.model}", soft_wrap=True)
    fitted = {name: ms for name, ms in report.own_ms.items() if ms}
    if fitted:
        terms = ", ".join(f"{name} {ms:.4g} ms" for name, ms in fitted.items())
        console.print(f"the device's own terms: {terms}", soft_wrap=True)


def _network_target(device: str, store) -> tuple[object, bool]:
    """(the device a network fit is for, whether it is new): a device file, a known device, or
    a new name, which the fit creates once it succeeds (it has no device file)."""
    if is_device_file(device) or store.device(device) is not None:
        return resolve_device(device, store), False
    if not NAME.match(device):
        raise LatkitError(
            f"--device {device!r}: a device name may only hold letters, digits, '.', '_' and '-' "
            "(at most 100)"
        )
    return device, True


def _say_new_device(name: str, store) -> None:
    err_console.print(
        f"new device {name!r} in {store.path}: it has no device file, so F is fitted from "
        "the networks alone and the device can be predicted (latkit predict), not profiled",
        highlight=False,
        soft_wrap=True,
    )


def _prior(store, name: str, prior: str | None, calibrate: bool, seed: int, data_dir: Path):
    """The predictor a network fit starts from: this device's op-table fit (--calibrate), an
    already fitted device's predictor (--prior), or none."""
    from latkit.predictors import LatencyPredictor, load_predictor
    from latkit.predictors.fit import op_rows

    if calibrate:
        ops, latencies, env = op_rows(store, name)
        return LatencyPredictor(seed=seed, device=name).fit(ops, latencies).stamp(**env)
    if prior is None:
        return None
    reference = device_name(resolve_device(prior, store)) if is_device_file(prior) else prior
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base = load_predictor(reference, data_dir)
    _print_warnings(caught)
    return base


@dataclass(frozen=True)
class _Fitted:
    """What either way of fitting produced, for printing."""

    predictor: LatencyPredictor
    n_train: int
    n_test: int
    test: dict
    comparison: dict
    unit: str


def _fit_ops(store, name: str, test_fraction: float, seed: int, data_dir: Path) -> _Fitted:
    from latkit.predictors import fit_device

    report = fit_device(store, name, test_fraction=test_fraction, seed=seed, data_dir=data_dir)
    return _Fitted(
        report.predictor, report.n_train, report.n_test, report.test, report.comparison, "ops"
    )


def _network_samples(device, networks: Path) -> list:
    """The (ops, ms) pairs of NETS.jsonl at the device's batch size, read before anything is
    fitted or stored, so a bad file stops the fit with nothing changed."""
    from latkit.predictors import load_network_samples

    batch = 1 if isinstance(device, str) else device.batch_size
    return load_network_samples(networks, batch=batch)


def _fit_networks(
    device, samples: list, base, test_fraction: float, train: int | None, seed: int
) -> _Fitted:
    from latkit.predictors import fit_networks

    name = device_name(device)
    batch = 1 if isinstance(device, str) else device.batch_size
    predictor, test = fit_networks(
        samples, test_fraction=test_fraction, seed=seed, base=base, n_train=train, device=name
    )
    if not isinstance(device, str):
        predictor.meta.update(runtime=device.runtime, batch=batch, threads=device.threads)
    meta = predictor.meta
    return _Fitted(predictor, meta["n_train"], meta["n_test"], test, {}, "networks")


@app.command()
def predict(
    device: StoredDevice,
    arch: PredictArchs = [],  # noqa: B006 (typer passes a fresh list; none is kept)
    networks: PredictNetworks = None,
    onnx: OnnxFiles = [],  # noqa: B006 (typer passes a fresh list; none is kept)
    input_shape: InputShape = None,
    allow_unmapped: AllowUnmapped = False,
    ops: ShowOps = False,
    space: SubnetSpace = "ofa-mbv3",
    resolution: Resolution = None,
    db: PredictDb = DEFAULT_DB,
    data_dir: DataDir = Path("data"),
    json_out: PredictJson = None,
) -> None:
    """Predict how fast networks run on the device, with a 90% interval each.

    Answers come from the device's predictor (`latkit fit`); nothing is timed. A network the
    store already holds a timing of (same ops, same environment) shows it beside F's answer.
    The interval is calibrated on held-out whole networks where the predictor had them, else it
    adds up the ops' intervals (wide: it cannot see what only whole networks show).

    An --onnx network is mapped to op specs node by node (MBConv blocks with or without SE,
    convs, pooling, the classifier), exactly or not at all: a network with nodes no op spec
    describes is an error that lists them, unless --allow-unmapped, which answers for the
    mapped part and lists the rest (also in --json).
    """
    from latkit.workflows.predict import predict as predict_networks

    answers = predict_networks(
        device,
        arch,
        networks,
        db=db,
        data_dir=data_dir,
        space=space,
        input_hw=resolution,
        onnx=onnx,
        input_shape=onnx_input_shape(onnx, input_shape, allow_unmapped),
        allow_unmapped=allow_unmapped,
    )
    warn_unmapped(a.mapping for a in answers if a.mapping is not None)
    table = Table(title=f"F of {device}: {len(answers)} network(s)")
    for col in ("network", "predicted ms", "90% interval ms", "interval from", "measured ms"):
        table.add_column(col, justify="right")
    for a in answers:
        high = "∞" if a.high_ms == float("inf") else f"{a.high_ms:.3f}"
        measured = "-" if a.measured_ms is None else f"{a.measured_ms:.3f}"
        table.add_row(
            a.name,
            f"{a.predicted_ms:.3f}",
            f"{a.low_ms:.3f} .. {high}",
            a.interval_source,
            measured,
        )
    console.print(table)
    if ops:
        for a in answers:
            detail = Table(title=f"{a.name}: {a.predicted_ms:.3f} ms")
            for col in ("op", "ms", "share", "from"):
                detail.add_column(col, justify="right" if col in ("ms", "share") else "left")
            for share in a.ops:
                part = "-" if math.isnan(share.share) else f"{share.share:.1%}"
                detail.add_row(share.key, f"{share.ms:.4f}", part, share.source)
            console.print(detail)
    if json_out:
        write_json(json_out, {"networks": [a.to_json(with_ops=ops) for a in answers]})


@app.command()
def validate(
    device: TimedDevice,
    networks: Networks = 50,
    space: Space = "proxyless-mobile",
    seed: SampleSeed = 0,
    db: Db = DEFAULT_DB,
    data_dir: WritableDataDir = Path("data"),
    json_out: ValidateJson = None,
) -> None:
    """Check the fitted predictor end to end on whole networks timed on the device.

    Samples random architectures from the space (seeded), times each whole network with the
    device's own profiler, and compares with F. Saves validation.csv and validation.png
    (predicted vs measured with the ±10% band) under `DATA_DIR/<device>/`. Timings are committed
    as they finish: run the same command again after an interruption to continue.
    """
    from latkit.predictors import load_predictor
    from latkit.profilers import get_profiler
    from latkit.spaces import load_space
    from latkit.workflows.validate import validate_device

    with open_store(db) as store:
        config = require_config(resolve_device(device, store), "validate")
        search_space = load_space(space)
        profiler = get_profiler(config)
        try:
            env = profiler.environment()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                predictor = load_predictor(
                    config.name,
                    data_dir,
                    expect={
                        "runtime": env.runtime,
                        "runtime_version": env.runtime_version,
                        "batch": env.batch,
                        "threads": env.threads,
                    },
                    device_file=config.source,
                )
            _print_warnings(caught)
            with reporting() as reporter:
                report = validate_device(
                    profiler,
                    predictor,
                    search_space,
                    n=networks,
                    seed=seed,
                    store=store,
                    out_dir=Path(data_dir) / config.name,
                    reporter=reporter,
                    description=f"timing networks on {config.name}",
                )
        finally:
            profiler.close()
    label = f" ({profiler.label})" if profiler.label else ""
    console.print(
        _metrics_table(
            f"{config.name}{label}: F vs {report.n} whole networks of {search_space.name}",
            {"networks": report.metrics},
        )
    )
    console.print(f"wrote {report.csv_path} and {report.png_path}")
    if json_out:
        write_json(json_out, {"n": report.n, **report.metrics})


@app.command("import-lut")
def import_lut_command(file: LutFile, device: ImportDevice, db: Db = DEFAULT_DB) -> None:
    """Import a latency lookup table measured elsewhere (dialect detected from its keys).

    Each key becomes an op row with the table's count, mean and var or std. Importing several
    files for one device (e.g. one per input resolution) builds one table for `latkit fit`.
    """
    from latkit.predictors import import_lut

    with open_store(db) as store:
        target = _import_target(device, store)
        dialect, count = import_lut(store, file, target)
        name = device_name(target)
    console.print(f"imported {count} ops ({dialect} dialect) from {file} as device {name!r}")


@app.command("export-lut")
def export_lut_command(
    device: StoredDevice, fmt: LutFormat, out: LutOut, db: Db = DEFAULT_DB
) -> None:
    """Write a device's op rows as a ProxylessNAS or once-for-all YAML latency table."""
    from latkit.predictors import export_lut

    with open_store(db) as store:
        name = device_name(resolve_device(device, store))
        count = export_lut(store, name, fmt, out)
    console.print(f"wrote {count} ops of {name!r} to {out} ({fmt} format)")


@app.command("import-measurements")
def import_measurements_command(file: CsvFile, device: ImportDevice, db: Db = DEFAULT_DB) -> None:
    """Import latencies measured elsewhere from a CSV.

    Columns: type, input_hw, cin, cout (required) and stride, kernel, expand, groups, se, act,
    skip, batch (optional, with the op defaults), plus latency_ms (ms); std_ms, runs and the
    other statistics are optional. The CSV of `latkit measurements --csv` imports as it is
    (median_ms is the latency). A bad row stops the import with its line number, before
    anything is stored.
    """
    from latkit.predictors import import_measurements

    with open_store(db) as store:
        target = _import_target(device, store)
        count = import_measurements(store, file, target)
        name = device_name(target)
    console.print(f"imported {count} rows from {file} as device {name!r}")


@app.command("import-networks")
def import_networks_command(file: NetsFile, device: ImportDevice, db: Db = DEFAULT_DB) -> None:
    """Import whole-network timings measured elsewhere (a colleague's JSONL, a paper's data).

    Each line becomes one stored network timing of the device, with origin `imported`; a
    network imported again is updated, not stored twice. Ops are op spec dicts or table keys,
    at the device's batch size. A bad line stops the import with its line number, before
    anything is stored. From 3 networks of a space, the device counts for `latkit fit
    --transfer` like a profiled one; with 3 or more it can itself be fitted with --transfer.
    """
    from latkit.workflows.transfer import import_networks

    with open_store(db) as store:
        target = _import_target(device, store)
        new, updated = import_networks(store, file, target)
        name = device_name(target)
    console.print(
        f"imported {new + updated} networks from {file} as device {name!r}: "
        f"{new} new, {updated} updated"
    )
