"""Search commands: `latkit search` against a device's F, and `latkit quickstart` end to end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from latkit.cli.app import (
    DB_HELP,
    DEFAULT_DB,
    app,
    console,
    open_store,
    progress_bar,
    require_config,
    resolve_device,
    write_json,
)
from latkit.errors import LatkitError

DATA_HELP = "Folder of fitted predictors; results go to DATA_DIR/<device>/ unless --out is given."
#: ProxylessNAS moves α with lr 1e-3 over ~10^5 ImageNet arch steps; digits gives ~10^2, so the
#: command line defaults to a larger step.
ARCH_LR = 0.03
#: add-linear, because with Adam the direction of mul-log's update does not depend on T.
LOSS = "add-linear"


class RichReporter:
    """Progress bars per stage, and the per-epoch line printed above them."""

    def __init__(self, bar, names: Callable[[tuple[int, ...]], str]) -> None:
        self.bar = bar
        self.names = names

    def task(self, description: str, total: int | None) -> Callable[[], None]:
        task = self.bar.add_task(description, total=total)
        return lambda: self.bar.advance(task)

    def epoch(self, r) -> None:
        arch = f"  loss_arch {r.extra['arch_loss']:.3f}" if "arch_loss" in r.extra else ""
        self.bar.console.print(
            f"epoch {r.epoch:>3} [dim]{r.phase:<6}[/] train loss {r.train_loss:.3f}  "
            f"val acc {r.val_acc:6.1%}  E[LAT] {r.expected_ms:.4f} ms  "
            f"entropy {r.entropy:.3f}{arch}  [dim]{self.names(r.arch)}[/]",
            highlight=False,
        )

    def note(self, text: str) -> None:
        self.bar.console.print(text, highlight=False)


@contextlib.contextmanager
def torch_threads(count: int):
    """Train with `count` intra-op threads (0: torch's default), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


THREADS_HELP = "Torch threads for training (0: torch's default, all cores)."


def _arch_names(space) -> Callable[[tuple[int, ...]], str]:
    from latkit.spaces import candidate_name

    layers = space.layers()

    def names(arch: tuple[int, ...]) -> str:
        return " ".join(
            candidate_name(layer.candidates[i]).replace("_MBConv", "e")
            for layer, i in zip(layers, arch)
        )

    return names


def _search_config(**kwargs):
    from search.losses import LOSSES
    from search.mixed_op import MODES
    from search.trainer import STRATEGIES, SearchConfig

    kwargs = {"arch_lr": ARCH_LR, "loss": LOSS, **kwargs}
    for option, allowed in (("strategy", STRATEGIES), ("loss", LOSSES), ("mode", MODES)):
        if option in kwargs and kwargs[option] not in allowed:
            raise LatkitError(f"--{option} {kwargs[option]!r} is not one of {', '.join(allowed)}")
    return SearchConfig(**kwargs)


def _result_table(result, title: str) -> Table:
    table = Table(title=title)
    for col in ("architecture", "predicted ms", "measured ms", "error", "test acc", "search s"):
        table.add_column(col, justify="right")
    measured = result.measured_ms
    table.add_row(
        " ".join(result.names),
        f"{result.predicted_ms:.4f}",
        "-" if measured is None else f"{measured:.4f}",
        "-" if measured is None else f"{(result.predicted_ms - measured) / measured:+.1%}",
        "-" if result.accuracy is None else f"{result.accuracy:.1%}",
        f"{result.search_s:.0f}",
    )
    return table


@app.command()
def search(
    device: str = typer.Option(..., "--device", "-d", help="Device file (YAML) to search for."),
    target_ms: float = typer.Option(..., "--target-ms", "-t", help="Latency target T in ms."),
    space: str = typer.Option("proxyless-tiny", help="Built-in space name or a space YAML."),
    dataset: str = typer.Option(
        "digits",
        help="digits (bundled with scikit-learn) or cifar10:DIR (extracted python batches).",
    ),
    epochs: int = typer.Option(8, min=0, help="Search epochs (weights and architecture)."),
    warmup_epochs: int = typer.Option(
        4, "--warmup-epochs", min=0, help="Weights-only epochs before the architecture moves."
    ),
    strategy: str = typer.Option("gradient", help="gradient (binary gates) or reinforce."),
    loss: str = typer.Option(
        LOSS,
        help="add-linear: CE + 0.1 (E[LAT]-T)/T; mul-log: 0.2 CE (log E[LAT]/log T)^0.3.",
    ),
    lam: float | None = typer.Option(
        None, "--lam", min=0.0, help="λ of add-linear (default 0.1, as ProxylessNAS)."
    ),
    mode: str = typer.Option(
        "two-path", help="Binary-gate mode: two-path, single, or all-path (DARTS, memory-hungry)."
    ),
    hard_budget: bool = typer.Option(
        False, "--hard-budget", help="Project the final architecture until F predicts <= T."
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
    measure: bool = typer.Option(
        True, "--measure/--no-measure", help="Time the found network on the device at the end."
    ),
    train_threads: int = typer.Option(0, "--train-threads", min=0, help=THREADS_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON here."),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP + " The final timing is stored in it."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help=DATA_HELP),
    out: Path | None = typer.Option(None, "--out", help="Folder for net.config, PNG, history."),
) -> None:
    """Search an architecture that is fast on the device: ProxylessNAS with F(op) in the loss.

    Needs the device's fitted predictor (`latkit profile`, then `latkit fit`). Prints one line per
    epoch, writes the architecture as ProxylessNAS net.config JSON, trains it briefly, and times it
    on the device so the predicted latency is checked against a measured one.
    """
    from latkit.spaces import load_space
    from search.run import run_search

    if lam is not None and loss != "add-linear":
        raise LatkitError("--lam applies to --loss add-linear only")
    config = _search_config(
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
    with open_store(db) as store:
        device_config = require_config(resolve_device(device, store), "search")
        with progress_bar() as bar, torch_threads(train_threads):
            result = run_search(
                device_config,
                config,
                space=chosen,
                dataset=dataset,
                hard_budget=hard_budget,
                final_epochs=final_epochs,
                measure=measure,
                data_dir=data_dir,
                out_dir=out,
                store=store,
                reporter=RichReporter(bar, _arch_names(chosen)),
            )
    console.print(_result_table(result, f"search on {device_config.name}: T = {target_ms:g} ms"))
    console.print(f"net.config: {result.paths['net_config']}")
    if "png" in result.paths:
        console.print(f"E[LAT] and accuracy over the search: {result.paths['png']}")
    if json_out:
        write_json(json_out, result.to_json())


# --- quickstart ----------------------------------------------------------------------------------

DEFAULT_DEVICE_FILE = Path(__file__).resolve().parents[2] / "device_configs" / "local-cpu.yaml"


def default_device():
    """`device_configs/local-cpu.yaml` of this checkout, or the same settings built in."""
    from latkit.devices import DeviceConfig, Timing, load_device

    if DEFAULT_DEVICE_FILE.exists():
        return load_device(DEFAULT_DEVICE_FILE)
    return DeviceConfig(
        name="local-cpu",
        kind="cpu",
        runtime="onnxruntime",
        batch_size=1,
        threads=1,
        timing=Timing(warmup=10, runs=50, rounds=3, max_cv=0.05),
    )


@app.command()
def quickstart(
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help=DATA_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Write the summary as JSON here."),
    networks: int = typer.Option(20, min=2, help="Whole networks that validate F."),
    epochs: int = typer.Option(8, min=0, help="Search epochs."),
    warmup_epochs: int = typer.Option(4, "--warmup-epochs", min=0, help="Weights-only epochs."),
    final_epochs: int = typer.Option(4, "--final-epochs", min=0, help="Epochs for the result."),
    train_threads: int = typer.Option(
        1, "--train-threads", min=0, help=THREADS_HELP + " 1 keeps a small machine responsive."
    ),
) -> None:
    """The whole job on this machine's CPU (onnxruntime, 1 thread), in a few minutes.

    Profiles the proxyless-tiny space, fits F, validates it on whole networks, searches on digits
    at a target between the fastest and the slowest architecture, and times the result. Every
    stage is resumable: run it again after an interruption and finished work is reused.
    """
    from latkit.spaces import load_space
    from predictors import fit_device, validate_device
    from predictors.fit import predictor_path
    from profilers import get_profiler
    from profilers.session import profile_ops
    from search.latency import LatencyTable
    from search.run import run_search, time_networks

    started = time.perf_counter()
    config = default_device()
    space = load_space("proxyless-tiny")
    out_dir = data_dir / config.name
    with open_store(db) as store, progress_bar() as bar:
        profiler = get_profiler(config)
        try:
            task = bar.add_task(f"1/5 profiling {space.name} on {config.name}", total=None)

            def on_start(total: int, todo: int) -> None:
                bar.update(task, total=todo)
                if todo < total:
                    bar.console.print(f"resuming: {total - todo} of {total} ops already stored")

            summary = profile_ops(
                profiler,
                space.distinct_ops(),
                store,
                on_start=on_start,
                on_progress=lambda step: bar.advance(task, step),
            )
            calibration = max(5, networks // 2)
            task = bar.add_task("2/5 fitting F (timing calibration networks)", total=calibration)
            samples = time_networks(
                profiler, store, space, calibration, 1000, "calibrate", lambda: bar.advance(task)
            )
            fitted = fit_device(store, config.name, data_dir=data_dir)
            predictor = fitted.predictor
            predictor.fit_overhead(samples)
            predictor.save(predictor_path(config.name, data_dir))
            task = bar.add_task(f"3/5 validating F on {networks} networks", total=networks)
            validation = validate_device(
                profiler,
                predictor,
                space,
                n=networks,
                seed=0,
                store=store,
                out_dir=out_dir / "validation",
                on_progress=lambda step: bar.advance(task, step),
            )
        finally:
            profiler.close()
        table = LatencyTable.from_predictor(predictor, space, batch=config.batch_size)
        _, fastest = table.fastest()
        _, slowest = table.slowest()
        target = round(fastest + 0.4 * (slowest - fastest), 4)
        bar.console.print(
            f"4/5 searching on digits at T = {target:g} ms "
            f"(architectures span {fastest:.4f} .. {slowest:.4f} ms predicted)"
        )
        with torch_threads(train_threads):
            result = run_search(
                config,
                _search_config(target_ms=target, epochs=epochs, warmup_epochs=warmup_epochs),
                space=space,
                hard_budget=True,
                final_epochs=final_epochs,
                data_dir=data_dir,
                store=store,
                predictor=predictor,
                reporter=RichReporter(bar, _arch_names(space)),
            )
    wall = time.perf_counter() - started
    summary_table = Table(title=f"latkit quickstart on {config.name} ({wall:.0f} s)")
    summary_table.add_column("")
    summary_table.add_column("result")
    rows = {
        "ops profiled": str(summary.ops),
        "F ±10% (networks)": f"{validation.metrics['acc10']:.0%} of {validation.n}",
        "final architecture": " ".join(result.names),
        "target ms": f"{target:g}",
        "predicted ms": f"{result.predicted_ms:.4f}",
        "measured ms": "-" if result.measured_ms is None else f"{result.measured_ms:.4f}",
        "test acc": "-" if result.accuracy is None else f"{result.accuracy:.1%}",
    }
    for name, value in rows.items():
        summary_table.add_row(name, value)
    console.print(summary_table)
    console.print(
        f"predictor: {fitted.path}  validation: {validation.png_path}  "
        f"architecture: {result.paths['net_config']}"
    )
    if json_out:
        write_json(
            json_out,
            {
                "device": config.name,
                "ops_profiled": summary.ops,
                "validation": validation.to_json(),
                "search": result.to_json(),
                "wall_s": wall,
            },
        )
