"""Search commands: `latkit search` against a device's F, and `latkit quickstart` end to end."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from latkit.cli.app import (
    DB_HELP,
    DEFAULT_DB,
    Db,
    Space,
    app,
    json_option,
    open_store,
    require_config,
    resolve_device,
    writable_dir,
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
from latkit.devices import device_name
from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.workflows.defaults import (
    ARCH_LR,
    BATCH_SIZE,
    DATASET,
    EPOCHS,
    FINAL_EPOCHS,
    LOSS,
    MAX_ARCH_LR,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_NETWORKS,
    MAX_NPROC,
    MAX_ROUNDS,
    MAX_SEED,
    MODE,
    QUICKSTART_FINAL_EPOCHS,
    ROUNDS,
    SPACE,
    STRATEGY,
    WARMUP_EPOCHS,
    free_cores,
    usable_cores,
)

if TYPE_CHECKING:
    from latkit.devices import DeviceConfig
    from latkit.search.trainer import SearchConfig
    from latkit.spaces import SearchSpace
    from latkit.store import MeasurementStore
    from latkit.workflows.search import SearchResult

DATA_HELP = "Folder of fitted predictors; results go to `DATA_DIR/<device>/` unless --out is given."
THREADS_HELP = "Torch threads for training (0: torch's default, all cores)."
SEARCH_THREADS_HELP = (
    "Torch threads for training. Default: the cores free now (usable cores minus the 1-minute "
    "load average, at least 1), printed; 0: torch's default (all cores)."
)
#: the cores this process may use: the most threads or processes worth asking for
CORES = usable_cores()
#: the search options about timing the result on the device: a help panel of their own, so
#: that `--measure/--no-measure` leaves the other options' help its width
TIMING = "Timing the result on the device"


def positive(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: a finite number > 0 (a NaN or infinite one parses as a float)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def bounded(
    high: float,
) -> Callable[[typer.Context, typer.CallbackParam, float | None], float | None]:
    """Option callback: a finite number > 0 and at most `high`."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
        if positive(ctx, param, value) is not None and value > high:
            raise typer.BadParameter(f"must be at most {high:g}, got {value:g}")
        return value

    return check


def non_negative(
    ctx: typer.Context, param: typer.CallbackParam, value: float | None
) -> float | None:
    """Option callback: a finite number >= 0."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"must be a finite number >= 0, got {value}")
    return value


# --- the options of `latkit search` and `latkit quickstart` -------------------------------------

SearchDevice = Annotated[
    str,
    typer.Option(
        "--device",
        "-d",
        help="Device file (YAML), or the name of a device in --db (imported data: F only).",
    ),
]
TargetMs = Annotated[
    float,
    typer.Option(
        "--target-ms",
        "-t",
        help="Latency target T in ms. A T outside F's range for the space is refused, with "
        "the range.",
        callback=positive,
    ),
]
DatasetName = Annotated[
    str,
    typer.Option(
        "--dataset",
        help="digits (bundled with scikit-learn), cifar10:DIR (extracted python batches) or "
        "imagefolder:DIR (a train and a val folder, each with one folder of images per class; "
        "needs latkit[vision]).",
    ),
]
Epochs = Annotated[
    int,
    typer.Option(
        "--epochs",
        min=0,
        max=MAX_EPOCHS,
        help="Search epochs (weights and architecture); 0: no training, F's range now.",
    ),
]
WarmupEpochs = Annotated[
    int,
    typer.Option(
        "--warmup-epochs",
        min=0,
        max=MAX_EPOCHS,
        help="Weights-only epochs before the architecture moves.",
    ),
]
Strategy = Annotated[str, typer.Option("--strategy", help="gradient (binary gates) or reinforce.")]
Loss = Annotated[
    str,
    typer.Option(
        "--loss",
        help="lagrangian: lands E[LAT] on T (dual ascent). ProxylessNAS's trade-offs, which push "
        "latency down rather than track T: add-linear, CE + λ(E[LAT]-T)/T; mul-log, "
        "0.2 CE (log E[LAT]/log T)^0.3.",
    ),
]
Lam = Annotated[
    float | None,
    typer.Option(
        "--lam",
        help="λ of add-linear, >= 0 (default 0.1, as ProxylessNAS).",
        callback=non_negative,
    ),
]
Mode = Annotated[
    str,
    typer.Option(
        "--mode",
        help="Binary-gate mode: two-path, single, or all-path (DARTS, memory-hungry).",
    ),
]
HardBudget = Annotated[
    bool,
    typer.Option(
        "--hard-budget",
        help="Derive within [0.96 T, T] predicted (aim: measured <= T); else within T ± 2%. "
        "Exits with status 1 if the result, timed afresh, is over T or under 0.9 T.",
    ),
]
SearchSeed = Annotated[
    int,
    typer.Option(
        "--seed",
        min=0,
        max=MAX_SEED,
        help="Seeds the data split, the init and the path sampling.",
    ),
]
FinalEpochs = Annotated[
    int,
    typer.Option(
        "--final-epochs",
        min=0,
        max=MAX_EPOCHS,
        help="Epochs to train the found network from scratch.",
    ),
]
ArchLr = Annotated[
    float,
    typer.Option(
        "--arch-lr",
        help=f"Adam lr of α, in (0, {MAX_ARCH_LR:g}] (ProxylessNAS: 1e-3 over ~10^5 ImageNet "
        "steps; small data needs more).",
        callback=bounded(MAX_ARCH_LR),
    ),
]
BatchSize = Annotated[
    int, typer.Option("--batch-size", min=2, max=MAX_BATCH, help="Training batch size.")
]
Measure = Annotated[
    bool,
    typer.Option(
        "--measure/--no-measure",
        help="Time the found network on the device, and while predicted and measured differ by "
        "over 5%, refit F and derive the network again; --no-measure does not time it.",
        rich_help_panel=TIMING,
    ),
]
MeasureOn = Annotated[
    str | None,
    typer.Option(
        "--measure-on",
        help="Device file to time the result on (for a --device known only by imported data).",
        rich_help_panel=TIMING,
    ),
]
Rounds = Annotated[
    int,
    typer.Option(
        "--rounds",
        min=1,
        max=MAX_ROUNDS,
        help="Most derive-and-time rounds of the closed loop.",
        rich_help_panel=TIMING,
    ),
]
SearchThreads = Annotated[
    int | None,
    typer.Option("--train-threads", min=0, max=CORES, help=SEARCH_THREADS_HELP, show_default=False),
]
TrainDevice = Annotated[
    str,
    typer.Option(
        "--train-device",
        help="Where the supernet trains: cpu, cuda, cuda:N, mps or auto. Latency is still that "
        "of --device, where the found network is timed.",
    ),
]
Amp = Annotated[
    str | None,
    typer.Option("--amp", help="Mixed precision for training: bf16 or fp16 (with loss scaling)."),
]
ResumeSearch = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the search checkpointed in the output folder (same arguments, same --out).",
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an earlier search's results in the output folder; without it (or "
        "--resume) a folder holding them is refused.",
    ),
]
Nproc = Annotated[
    int,
    typer.Option(
        "--nproc",
        min=1,
        max=MAX_NPROC,
        help="Data-parallel processes on this machine, started with torchrun (gloo on CPU, NCCL "
        "on CUDA); --batch-size is the global batch. Same as torchrun --nproc-per-node N -m latkit.",
    ),
]
SearchJson = Annotated[Path | None, json_option("the result as JSON")]
SearchDb = Annotated[str, typer.Option("--db", help=DB_HELP + " The timings are stored in it.")]
DataDir = Annotated[Path, typer.Option("--data-dir", help=DATA_HELP, callback=writable_dir)]
OutDir = Annotated[
    Path | None,
    typer.Option("--out", help="Folder for net.config, PNG, history.", callback=writable_dir),
]
QuickstartJson = Annotated[Path | None, json_option("the summary as JSON")]
Networks = Annotated[
    int,
    typer.Option("--networks", min=2, max=MAX_NETWORKS, help="Whole networks that validate F."),
]
QuickEpochs = Annotated[int, typer.Option("--epochs", min=0, max=MAX_EPOCHS, help="Search epochs.")]
QuickWarmupEpochs = Annotated[
    int,
    typer.Option("--warmup-epochs", min=0, max=MAX_EPOCHS, help="Weights-only epochs."),
]
QuickFinalEpochs = Annotated[
    int,
    typer.Option("--final-epochs", min=0, max=MAX_EPOCHS, help="Epochs for the result."),
]
QuickThreads = Annotated[
    int,
    typer.Option(
        "--train-threads",
        min=0,
        max=CORES,
        help=THREADS_HELP + " 1 keeps a small machine responsive.",
    ),
]


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
        "-" if result.error is None else f"{result.error:+.1%}",
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
    device: SearchDevice,
    target_ms: TargetMs,
    space: Space = SPACE,
    dataset: DatasetName = DATASET,
    epochs: Epochs = EPOCHS,
    warmup_epochs: WarmupEpochs = WARMUP_EPOCHS,
    strategy: Strategy = STRATEGY,
    loss: Loss = LOSS,
    lam: Lam = None,
    mode: Mode = MODE,
    hard_budget: HardBudget = False,
    seed: SearchSeed = 0,
    final_epochs: FinalEpochs = FINAL_EPOCHS,
    arch_lr: ArchLr = ARCH_LR,
    batch_size: BatchSize = BATCH_SIZE,
    measure: Measure = True,
    measure_on: MeasureOn = None,
    rounds: Rounds = ROUNDS,
    train_threads: SearchThreads = None,
    train_device: TrainDevice = "cpu",
    amp: Amp = None,
    resume: ResumeSearch = False,
    overwrite: Overwrite = False,
    nproc: Nproc = 1,
    json_out: SearchJson = None,
    db: SearchDb = DEFAULT_DB,
    data_dir: DataDir = Path("data"),
    out: OutDir = None,
) -> None:
    """Search an architecture that runs in about T on the device: ProxylessNAS with F(op).

    Needs the device's fitted predictor (`latkit profile`, then `latkit fit`). Prints F's range
    for the space, one line per epoch, then times the derived network on the device: while
    predicted and measured disagree by more than 5% (or the measurement misses T), the timing
    joins the calibration, F's network terms are refit and the network is derived and timed
    again (--rounds). The network settled on is timed once more, afresh; F's error is that of
    its prediction from the round it was first derived in. Writes net.config, trains it
    briefly, and saves the result. Every epoch is checkpointed in the output folder; Ctrl-C
    saves the current step, and `--resume` continues. A T outside F's range is refused with
    the range; `--epochs 0 --final-epochs 0 --no-measure` prints it.
    """
    from latkit.search.trainer import SearchConfig
    from latkit.spaces import load_space
    from latkit.workflows.search import check_out_dir, default_out_dir, launch_search

    if lam is not None and loss != "add-linear":
        raise LatkitError("--lam applies to --loss add-linear only")
    config = SearchConfig(
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

    def checked(store):
        """The device, once its output folder is known not to hold an earlier search."""
        resolved = resolve_device(device, store)
        folder = out or default_out_dir(data_dir, device_name(resolved), chosen.name, target_ms)
        check_out_dir(folder, resume=resume, overwrite=overwrite)
        return resolved

    if nproc > 1:
        with open_store(db) as store:
            checked(store)
        with interruption_said():
            launch_search(nproc, _rank_args(sys.argv[1:], nproc, train_threads, resume), batch_size)
        return
    with open_store(db) as store, interruption_said():
        resolved = checked(store)
        timer = (
            None
            if measure_on is None
            else require_config(resolve_device(measure_on, store), "--measure-on")
        )
        result = _search_here(
            resolved,
            config,
            store,
            train_threads,
            space=chosen,
            dataset=dataset,
            hard_budget=hard_budget,
            final_epochs=final_epochs,
            measure=measure,
            measure_on=timer,
            rounds=rounds,
            data_dir=data_dir,
            out_dir=out,
            train_device=train_device,
            amp=amp,
            resume=resume,
            overwrite=overwrite,
        )
    if result.rank != 0:
        return
    _print_result(result, chosen, f"search on {device_name(resolved)}: T = {target_ms:g} ms")
    if json_out:
        write_json(json_out, result.to_json())
    if result.budget_missed:
        err_console.print(result.budget_missed, style="bold red", soft_wrap=True)
        raise typer.Exit(1)


def _search_here(
    device: DeviceConfig | str,
    config: SearchConfig,
    store: MeasurementStore,
    train_threads: int | None,
    *,
    space: SearchSpace,
    **options: Any,
) -> SearchResult:
    """`run_search` in this process: on the training threads asked for (else the cores free
    now, said), with the per-epoch lines and the progress of `reporting`."""
    from latkit.workflows.search import run_search, torch_threads

    threads, picked = _training_threads(train_threads)
    with reporting() as reporter, torch_threads(threads):
        return run_search(
            device,
            config,
            space=space,
            store=store,
            reporter=reporter,
            on_epoch=epoch_printer(reporter, space),
            training_notes=picked,
            **options,
        )


def _training_threads(requested: int | None, processes: int = 1) -> tuple[int, list[str]]:
    """`--train-threads` as given, else the cores free now shared by `processes`, with the
    line that says so: torch's default takes every core, however busy, and only slows every
    process on them."""
    if requested is not None:
        return requested, []
    free, cores, load = free_cores()
    threads = max(1, free // processes)
    each = " per process" if processes > 1 else ""
    return threads, [
        f"training on {threads} thread(s){each}: {cores} usable core(s), 1-minute load "
        f"{load:.2f} (--train-threads sets it)"
    ]


def _rank_args(args: list[str], nproc: int, train_threads: int | None, resume: bool) -> list[str]:
    """The command line of each of `nproc` processes: the threads picked once, here, for all
    of them (and said), and `--overwrite` unless resuming (this process has checked the output
    folder)."""
    extra = []
    if train_threads is None:
        threads, picked = _training_threads(None, nproc)
        console.print(*picked)
        extra += ["--train-threads", str(threads)]
    if not resume and "--overwrite" not in args:
        extra.append("--overwrite")
    return [*args, *extra]


def _print_result(result, space, title: str) -> None:
    """The result table, the architecture, where F's prediction came from, F's range, any
    note, and where the files are."""
    from latkit.workflows.loop import prediction_source

    low, high = result.range_ms
    console.print(_result_table(result, space, title))
    print_fields(["architecture:", *short_names(space, result.arch)], sep=" ")
    if result.predicted_round is not None:
        source = prediction_source(result.predicted_round, result.predicted_seen)
        console.print(f"{source}; measured afresh")
    console.print(f"F's range for {space.name}: {low:.4g} .. {high:.4g} ms predicted")
    if result.note:
        for line in wrap(result.note, console.width):
            console.print(line, style="yellow", soft_wrap=True)
    console.print(f"net.config: {shown(result.paths['net_config'])}")
    if "png" in result.paths:
        console.print(f"E[LAT] and accuracy: {shown(result.paths['png'])}")


@app.command()
def quickstart(
    db: Db = DEFAULT_DB,
    data_dir: DataDir = Path("data"),
    json_out: QuickstartJson = None,
    networks: Networks = 20,
    epochs: QuickEpochs = EPOCHS,
    warmup_epochs: QuickWarmupEpochs = WARMUP_EPOCHS,
    final_epochs: QuickFinalEpochs = QUICKSTART_FINAL_EPOCHS,
    train_threads: QuickThreads = 1,
) -> None:
    """The whole job on this machine's CPU (onnxruntime, 1 thread), in a few minutes.

    Profiles the proxyless-tiny space (its ops and calibration networks), fits F, validates it
    on whole networks, searches on digits with a hard budget at a target between the fastest and
    the slowest architecture, and times the result until it lands (measured / T). Every
    stage is resumable: run it again after an interruption and finished work is reused.
    """
    from latkit.spaces import load_space
    from latkit.workflows.quickstart import quickstart

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
        "rows unstable": f"{len(result.profile.unstable)} ({len(result.profile.busy)} busy)",
        "F ±10% (networks)": f"{validation.metrics['acc10']:.0%} of {validation.n}",
        "F's 90% interval held": f"{validation.metrics['coverage']:.0%}",
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
