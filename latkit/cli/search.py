"""Search commands: `latkit search` against a device's F, and `latkit quickstart` end to end."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

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
from latkit.cli.output import (
    console,
    err_console,
    labelled,
    pack,
    print_fields,
    reporting,
    shown,
    wrap,
)
from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.workflows.defaults import ARCH_LR, LOSS, ROUNDS

DATA_HELP = "Folder of fitted predictors; results go to `DATA_DIR/<device>/` unless --out is given."
THREADS_HELP = "Torch threads for training (0: torch's default, all cores)."


def short_names(space, arch: Sequence[int]) -> list[str]:
    """`3x3e6`-style candidate names, short enough for a terminal line."""
    from latkit.spaces import candidate_name

    return [
        candidate_name(layer.candidates[i]).replace("_MBConv", "e")
        for layer, i in zip(space.layers(), arch)
    ]


def epoch_printer(reporter, space) -> Callable:
    """The per-epoch lines: loss, validation accuracy, E[LAT], entropy, then the argmax path,
    packed to the terminal's width so that they break between fields only."""

    def show(r) -> None:
        fields = [
            f"epoch {r.epoch:>3} {r.phase:<6}",
            f"train loss {r.train_loss:.3f}",
            f"val acc {r.val_acc:6.1%}",
            f"E[LAT] {r.expected_ms:.4f} ms",
            f"entropy {r.entropy:.3f}",
        ]
        if "arch_loss" in r.extra:
            fields.append(f"loss_arch {r.extra['arch_loss']:.3f}")
        for line in pack(fields, console.width):
            reporter.note(line)
        for line in pack(["   ", *short_names(space, r.arch)], console.width, 4, " "):
            reporter.note(line)

    return show


def _result_table(result, space, title: str) -> Table:
    table = Table(title=title)
    for col in ("predicted ms", "measured ms", "error", "measured / T", "test acc", "search s"):
        table.add_column(col, justify="right")
    measured = result.measured_ms
    table.add_row(
        f"{result.predicted_ms:.4f}",
        "-" if measured is None else f"{measured:.4f}",
        "-" if measured is None else f"{(result.predicted_ms - measured) / measured:+.1%}",
        "-" if measured is None else f"{measured / result.target_ms:.3f}",
        "-" if result.accuracy is None else f"{result.accuracy:.1%}",
        f"{result.search_s:.0f}",
    )
    return table


@contextlib.contextmanager
def interruption_said() -> Iterator[None]:
    """Ctrl-C during a search: print what was saved (the interrupt's message) and exit 130."""
    from latkit.workflows.search import SearchInterrupted

    try:
        yield
    except SearchInterrupted as exc:
        if not exc.quiet:
            err_console.print(labelled("interrupted: ", "yellow", str(exc)), soft_wrap=True)
        raise SystemExit(130) from None


@app.command()
def search(
    device: str = typer.Option(
        ...,
        "--device",
        "-d",
        help="Device file (YAML), or the name of a device in --db (imported data: F only).",
    ),
    target_ms: float = typer.Option(..., "--target-ms", "-t", help="Latency target T in ms."),
    space: str = typer.Option("proxyless-tiny", help="Built-in space name or a space YAML."),
    dataset: str = typer.Option(
        "digits",
        help="digits (bundled with scikit-learn), cifar10:DIR (extracted python batches) or "
        "imagefolder:DIR (a train and a val folder, each with one folder of images per class; "
        "needs latkit[vision]).",
    ),
    epochs: int = typer.Option(
        8, min=0, help="Search epochs (weights and architecture); 0: no training, F's range now."
    ),
    warmup_epochs: int = typer.Option(
        4, "--warmup-epochs", min=0, help="Weights-only epochs before the architecture moves."
    ),
    strategy: str = typer.Option("gradient", help="gradient (binary gates) or reinforce."),
    loss: str = typer.Option(
        LOSS,
        help="lagrangian: lands E[LAT] on T (dual ascent). ProxylessNAS's trade-offs, which push "
        "latency down rather than track T: add-linear, CE + λ(E[LAT]-T)/T; mul-log, "
        "0.2 CE (log E[LAT]/log T)^0.3.",
    ),
    lam: float | None = typer.Option(
        None, "--lam", min=0.0, help="λ of add-linear (default 0.1, as ProxylessNAS)."
    ),
    mode: str = typer.Option(
        "two-path", help="Binary-gate mode: two-path, single, or all-path (DARTS, memory-hungry)."
    ),
    hard_budget: bool = typer.Option(
        False,
        "--hard-budget",
        help="Derive within [0.96 T, T] predicted (aim: measured <= T); else within T ± 2%.",
    ),
    seed: int = typer.Option(0, help="Seeds the data split, the init and the path sampling."),
    final_epochs: int = typer.Option(
        5, "--final-epochs", min=0, help="Epochs to train the found network from scratch."
    ),
    arch_lr: float = typer.Option(
        ARCH_LR,
        "--arch-lr",
        help="Adam lr of α (ProxylessNAS: 1e-3 over ~10^5 ImageNet steps; small data needs more).",
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=2, help="Training batch size."),
    no_measure: bool = typer.Option(
        False,
        "--no-measure",
        help="Do not time the found network. By default it is timed on the device, and F is "
        "refit and the network derived again while predicted and measured differ by over 5%.",
    ),
    measure_on: str | None = typer.Option(
        None,
        "--measure-on",
        help="Device file to time the result on (for a --device known only by imported data).",
    ),
    rounds: int = typer.Option(
        ROUNDS, "--rounds", min=1, help="Most derive-and-time rounds of the closed loop."
    ),
    train_threads: int = typer.Option(0, "--train-threads", min=0, help=THREADS_HELP),
    train_device: str = typer.Option(
        "cpu",
        "--train-device",
        help="Where the supernet trains: cpu, cuda, cuda:N, mps or auto. Latency is still that "
        "of --device, where the found network is timed.",
    ),
    amp: str | None = typer.Option(
        None, "--amp", help="Mixed precision for training: bf16 or fp16 (with loss scaling)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the search checkpointed in the output folder (same arguments, same --out).",
    ),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Data-parallel processes on this machine, started with torchrun (gloo on CPU, NCCL "
        "on CUDA); --batch-size is the global batch. Same as torchrun --nproc-per-node N -m latkit.",
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the result as JSON here.", callback=writable_file
    ),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP + " The timings are stored in it."),
    data_dir: Path = typer.Option(
        Path("data"), "--data-dir", help=DATA_HELP, callback=writable_dir
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for net.config, PNG, history.", callback=writable_dir
    ),
) -> None:
    """Search an architecture that runs in about T on the device: ProxylessNAS with F(op).

    Needs the device's fitted predictor (`latkit profile`, then `latkit fit`). Prints F's range
    for the space, one line per epoch, then times the derived network on the device: while
    predicted and measured disagree by more than 5% (or the measurement misses T), the timing
    joins the calibration, F's network terms are refit and the network is derived and timed
    again (--rounds). Writes net.config, trains it briefly, and saves the result. Every epoch is
    checkpointed in the output folder; Ctrl-C saves the current step, and `--resume` continues.
    `--epochs 0 --final-epochs 0 --no-measure` prints the range of targets that make sense.
    """
    from latkit.spaces import load_space
    from latkit.workflows.search import launch_search, run_search, search_config, torch_threads

    if nproc > 1:
        with interruption_said():
            launch_search(nproc, sys.argv[1:], batch_size)
        return
    if lam is not None and loss != "add-linear":
        raise LatkitError("--lam applies to --loss add-linear only")
    config = search_config(
        loss_params={} if lam is None else {"lam": lam},
        target_ms=target_ms,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        strategy=strategy,
        loss=loss,
        mode=mode,
        seed=seed,
        arch_lr=arch_lr,
        batch_size=batch_size,
    )
    chosen = load_space(space)
    with open_store(db) as store, interruption_said():
        resolved = resolve_device(device, store)
        timer = (
            None
            if measure_on is None
            else require_config(resolve_device(measure_on, store), "--measure-on")
        )
        with reporting() as reporter, torch_threads(train_threads):
            result = run_search(
                resolved,
                config,
                space=chosen,
                dataset=dataset,
                hard_budget=hard_budget,
                final_epochs=final_epochs,
                measure=not no_measure,
                measure_on=timer,
                rounds=rounds,
                data_dir=data_dir,
                out_dir=out,
                store=store,
                reporter=reporter,
                on_epoch=epoch_printer(reporter, chosen),
                train_device=train_device,
                amp=amp,
                resume=resume,
            )
    if result.rank != 0:
        return
    low, high = result.range_ms
    title = f"search on {device_name(resolved)}: T = {target_ms:g} ms"
    console.print(_result_table(result, chosen, title))
    print_fields(["architecture:", *short_names(chosen, result.arch)], sep=" ")
    console.print(f"F's range for {chosen.name}: {low:.4g} .. {high:.4g} ms predicted")
    if result.note:
        for line in wrap(result.note, console.width):
            console.print(line, style="yellow", soft_wrap=True)
    console.print(f"net.config: {shown(result.paths['net_config'])}")
    if "png" in result.paths:
        console.print(f"E[LAT] and accuracy: {shown(result.paths['png'])}")
    if json_out:
        write_json(json_out, result.to_json())


@app.command()
def quickstart(
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
    data_dir: Path = typer.Option(
        Path("data"), "--data-dir", help=DATA_HELP, callback=writable_dir
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the summary as JSON here.", callback=writable_file
    ),
    networks: int = typer.Option(20, min=2, help="Whole networks that validate F."),
    epochs: int = typer.Option(8, min=0, help="Search epochs."),
    warmup_epochs: int = typer.Option(4, "--warmup-epochs", min=0, help="Weights-only epochs."),
    final_epochs: int = typer.Option(4, "--final-epochs", min=0, help="Epochs for the result."),
    train_threads: int = typer.Option(
        1, "--train-threads", min=0, help=THREADS_HELP + " 1 keeps a small machine responsive."
    ),
) -> None:
    """The whole job on this machine's CPU (onnxruntime, 1 thread), in a few minutes.

    Profiles the proxyless-tiny space (its ops and calibration networks), fits F, validates it
    on whole networks, searches on digits with a hard budget at a target between the fastest and
    the slowest architecture, and times the result until it lands (measured / T). Every
    stage is resumable: run it again after an interruption and finished work is reused.
    """
    from latkit.spaces import load_space
    from latkit.workflows.quickstart import SPACE, quickstart

    with reporting() as reporter:
        result = quickstart(
            db=db,
            data_dir=data_dir,
            networks=networks,
            epochs=epochs,
            warmup_epochs=warmup_epochs,
            final_epochs=final_epochs,
            train_threads=train_threads,
            reporter=reporter,
            on_epoch=epoch_printer(reporter, load_space(SPACE)),
        )
    search, validation = result.search, result.validation
    summary_table = Table(title=f"latkit quickstart on {result.device} ({result.wall_s:.0f} s)")
    summary_table.add_column("")
    summary_table.add_column("result")
    rows = {
        "ops profiled": str(result.profile.ops),
        "F ±10% (networks)": f"{validation.metrics['acc10']:.0%} of {validation.n}",
        "final architecture": " ".join(short_names(load_space(SPACE), search.arch)),
        "target ms": f"{result.target_ms:g}",
        "predicted ms": f"{search.predicted_ms:.4f}",
        "measured ms": "-" if search.measured_ms is None else f"{search.measured_ms:.4f}",
        "measured / T": "-"
        if result.measured_over_target is None
        else f"{result.measured_over_target:.3f}",
        "rounds (derive + time)": str(len(search.rounds)),
        "test acc": "-" if search.accuracy is None else f"{search.accuracy:.1%}",
    }
    for name, value in rows.items():
        summary_table.add_row(name, value)
    console.print(summary_table)
    for label, path in (
        ("predictor", result.predictor_path),
        ("validation", validation.png_path),
        ("architecture", search.paths["net_config"]),
    ):
        console.print(f"{label}: {shown(path)}")
    if json_out:
        write_json(json_out, result.to_json())
