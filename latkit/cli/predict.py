"""Predictor commands: fit F, validate it on whole networks, import and export latency tables."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from latkit.cli.app import (
    DB_HELP,
    DEFAULT_DB,
    app,
    device_name,
    open_store,
    require_config,
    resolve_device,
    writable_dir,
    writable_file,
)
from latkit.cli.output import console, err_console, labelled, print_fields, reporting, shown
from latkit.errors import LatkitError
from latkit.files import write_json

if TYPE_CHECKING:
    from latkit.predictors import LatencyPredictor

DATA_HELP = "Folder for predictors and reports (the predictor goes to `DATA_DIR/<device>/`)."
DEVICE_HELP = "Device file (YAML) or the name of a device already in the store."
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    for col in ("", "±5%", "±10%", "RMSPE", "Spearman"):
        table.add_column(col, justify="right")
    for label, m in rows.items():
        table.add_row(
            label,
            f"{m['acc5']:.1%}",
            f"{m['acc10']:.1%}",
            f"{m['rmspe']:.2f}%",
            f"{m['spearman']:.3f}",
        )
    return table


def _import_target(value: str, store) -> str:
    """The device name rows are imported under: a device file's name, or a (new) plain name."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.exists():
        device = resolve_device(value, store)
        store.register_device(device)
        return device_name(device)
    if not NAME.match(value):
        raise LatkitError(
            f"--device {value!r}: a device name may only hold letters, digits, '.', '_' and '-'"
        )
    return value


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        err_console.print(labelled("warning: ", "yellow", str(w.message)), soft_wrap=True)


@app.command()
def fit(
    device: str = typer.Option(..., "--device", "-d", help=DEVICE_HELP),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
    test_fraction: float = typer.Option(
        0.2, min=0.0, max=0.9, help="Share of rows (or networks) held out for the printed metrics."
    ),
    seed: int = typer.Option(0, help="Seeds the held-out split and the model fitting."),
    networks: Path | None = typer.Option(
        None,
        "--networks",
        help=(
            'Fit from whole-network timings instead: a JSONL file, one {"ops": [...], '
            '"latency_ms": x} per line, the ops as op spec dicts or table keys.'
        ),
    ),
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="With --networks: start from the op-table fit of this device's rows in --db and "
        "correct it with the networks, instead of fitting from the networks alone.",
    ),
    data_dir: Path = typer.Option(Path("data"), help=DATA_HELP, callback=writable_dir),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the held-out metrics here.", callback=writable_file
    ),
) -> None:
    """Fit the device's latency predictor F(op) and print held-out accuracy.

    From op rows (the default): every measured op becomes a table entry (an exact hit returns the
    measured value), and the best of several model families, compared on the same splits, answers
    for every other op. Whole-network timings already in the store set the per-network overhead.

    From networks (--networks): network = sum of F(op) + overhead, fitted by least squares with a
    per-op cost model, so F generalises to op combinations never timed together.
    """
    from latkit.predictors import predictor_path

    with open_store(db) as store:
        resolved = resolve_device(device, store)
        name = device_name(resolved)
        if networks is None:
            if calibrate:
                raise LatkitError("--calibrate needs --networks NETS.jsonl")
            result = _fit_ops(store, name, test_fraction, seed, data_dir)
        else:
            result = _fit_networks(store, resolved, networks, calibrate, test_fraction, seed)
            result.predictor.save(predictor_path(name, data_dir))
        if store.device(name) is None:  # once fitted, the name alone finds the device
            store.register_device(resolved)
    predictor = result.predictor
    print_fields(
        [
            f"fitted {name}:",
            f"family {predictor.meta.get('family')},",
            f"{result.n_train} training / {result.n_test} held-out {result.unit},",
            f"overhead {predictor.overhead_ms:.3f} ms per network",
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
    if json_out:
        write_json(
            json_out,
            {
                "device": name,
                "n_train": result.n_train,
                "n_test": result.n_test,
                "test": result.test,
            },
        )


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


def _fit_networks(
    store, device, networks: Path, calibrate: bool, test_fraction: float, seed: int
) -> _Fitted:
    from latkit.predictors import LatencyPredictor, fit_networks, load_network_samples
    from latkit.predictors.fit import op_rows

    name = device_name(device)
    base = None
    if calibrate:
        ops, latencies, env = op_rows(store, name)
        base = LatencyPredictor(seed=seed, device=name).fit(ops, latencies).stamp(**env)
    batch = 1 if isinstance(device, str) else device.batch_size
    samples = load_network_samples(networks, batch=batch)
    predictor, test = fit_networks(samples, test_fraction=test_fraction, seed=seed, base=base)
    predictor.device = name
    if not isinstance(device, str):
        predictor.meta.update(runtime=device.runtime, batch=batch, threads=device.threads)
    meta = predictor.meta
    return _Fitted(predictor, meta["n_train"], meta["n_test"], test, {}, "networks")


@app.command()
def validate(
    device: str = typer.Option(..., "--device", "-d", help="Device file (YAML) to time on."),
    networks: int = typer.Option(50, "--networks", min=1, help="How many random networks."),
    space: str = typer.Option("proxyless-mobile", help="Built-in space name or a space YAML."),
    seed: int = typer.Option(0, help="Seeds which architectures are sampled."),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
    data_dir: Path = typer.Option(Path("data"), help=DATA_HELP, callback=writable_dir),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write n and the metrics here.", callback=writable_file
    ),
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
def import_lut_command(
    file: Path = typer.Argument(..., help="ProxylessNAS or once-for-all YAML latency table."),
    device: str = typer.Option(..., "--device", "-d", help="Device name to store the rows under."),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
) -> None:
    """Import a latency lookup table measured elsewhere (dialect detected from its keys).

    Each key becomes an op row with the table's count, mean and var or std. Importing several
    files for one device (e.g. one per input resolution) builds one table for `latkit fit`.
    """
    from latkit.predictors import import_lut

    with open_store(db) as store:
        name = _import_target(device, store)
        dialect, count = import_lut(store, file, name)
    console.print(f"imported {count} ops ({dialect} dialect) from {file} as device {name!r}")


@app.command("export-lut")
def export_lut_command(
    device: str = typer.Option(..., "--device", "-d", help=DEVICE_HELP),
    fmt: str = typer.Option(
        ..., "--format", help="proxylessnas (expand = ratio, var) or ofa (expand = mid, std)."
    ),
    out: Path = typer.Option(..., "--out", help="YAML file to write.", callback=writable_file),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
) -> None:
    """Write a device's op rows as a ProxylessNAS or once-for-all YAML latency table."""
    from latkit.predictors import export_lut

    with open_store(db) as store:
        name = device_name(resolve_device(device, store))
        count = export_lut(store, name, fmt, out)
    console.print(f"wrote {count} ops of {name!r} to {out} ({fmt} format)")


@app.command("import-measurements")
def import_measurements_command(
    file: Path = typer.Argument(..., help="CSV: op spec columns plus latency_ms."),
    device: str = typer.Option(..., "--device", "-d", help="Device name to store the rows under."),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
) -> None:
    """Import latencies measured elsewhere from a CSV.

    Columns: type, input_hw, cin, cout (required) and stride, kernel, expand, groups, se, act,
    skip, batch (optional, with the op defaults), plus latency_ms (ms); std_ms and runs are
    optional. A bad row stops the import with its line number, before anything is stored.
    """
    from latkit.predictors import import_measurements

    with open_store(db) as store:
        name = _import_target(device, store)
        count = import_measurements(store, file, name)
    console.print(f"imported {count} rows from {file} as device {name!r}")
