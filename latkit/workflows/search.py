"""A whole hardware-aware search: F -> supernet -> architecture -> timed on the device.

`run_search` loads the device's predictor, searches, derives the architecture (optionally projected
onto the hard budget), writes it as `net.config`, trains it briefly from scratch, and times it end
to end with the device's own profiler, so the predicted figure is checked against a measured one.
Each epoch is appended to `history.csv` as it finishes, and checkpointed to `checkpoint.pt`.

The supernet trains on `train_device` (possibly under autocast); launched by torchrun, every process
searches its share of each global batch and rank 0 alone writes files and times the result.
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.reporting import Reporter, SilentReporter
from latkit.search.checkpoint import NAME as CHECKPOINT
from latkit.search.checkpoint import Checkpointer
from latkit.search.datasets import Dataset, load_dataset
from latkit.search.distributed import (
    DataParallel,
    Session,
    launch,
    strip_option,
    training_session,
)
from latkit.search.export import argmax_arch, project_to_budget, write_net_config
from latkit.search.latency import LatencyTable, Predictor
from latkit.search.plots import plot_history
from latkit.search.supernet import SuperNet, trainable_network
from latkit.search.trainer import EpochRecord, SearchConfig, SearchTrainer, train_network
from latkit.spaces import Network, SearchSpace, candidate_name, load_space
from latkit.store import MeasurementStore

#: ProxylessNAS moves α with lr 1e-3 over ~10^5 ImageNet arch steps; digits gives ~10^2, so
#: searches started from the command line default to a larger step.
ARCH_LR = 0.03
#: add-linear, because with Adam the direction of mul-log's update does not depend on T.
LOSS = "add-linear"


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Train with `count` intra-op threads (0: torch's default), restored afterwards."""
    before = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def search_config(**settings: Any) -> SearchConfig:
    """A `SearchConfig` with the command line's defaults (`ARCH_LR`, `LOSS`) under `settings`."""
    return SearchConfig(**{"arch_lr": ARCH_LR, "loss": LOSS, **settings})


@dataclass(frozen=True)
class SearchResult:
    arch: tuple[int, ...]
    names: tuple[str, ...]
    network: Network
    target_ms: float
    predicted_ms: float
    measured_ms: float | None
    accuracy: float | None
    search_s: float
    argmax_arch: tuple[int, ...]
    argmax_ms: float
    history: list[EpochRecord] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    probs: tuple[np.ndarray, ...] = ()
    train_device: str = "cpu"
    world_size: int = 1
    rank: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `--json` payload: the six fields the CLI promises, then provenance."""
        return {
            "arch": list(self.names),
            "target_ms": self.target_ms,
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.measured_ms,
            "accuracy": self.accuracy,
            "search_s": self.search_s,
            "arch_index": list(self.arch),
            "argmax_ms": self.argmax_ms,
            "train_device": self.train_device,
            "world_size": self.world_size,
            "files": {k: str(v) for k, v in self.paths.items()},
        }


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a search; the message says what was saved. `quiet` on every rank
    but 0, so that one line is printed."""

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


def default_out_dir(data_dir: Path, device: str, space: str, target_ms: float) -> Path:
    return Path(data_dir) / device / f"search-{space}-{target_ms:g}ms"


def run_search(
    device: DeviceConfig,
    config: SearchConfig,
    *,
    train_device: str = "cpu",
    amp: str | None = None,
    **options: Any,
) -> SearchResult:
    """`search_on` in a training session: on `train_device` (cpu, cuda, cuda:N, mps, auto) with
    optional `amp` (bf16, fp16), and inside torchrun in its process group."""
    with training_session(train_device, amp) as session:
        return search_on(session, device, config, **options)


def launch_search(nproc: int, args: list[str], batch_size: int) -> None:
    """`latkit ARGS` (a search command line holding `--nproc`) in `nproc` processes via torchrun."""
    DataParallel(world_size=nproc).check_batch(batch_size)
    if not any(arg == "--nproc" or arg.startswith("--nproc=") for arg in args):
        raise LatkitError("--nproc works on the command line: latkit search ... --nproc N")
    try:
        launch(nproc, strip_option(args, "--nproc"))
    except KeyboardInterrupt:  # the processes said what they saved
        raise SearchInterrupted("", quiet=True) from None


def search_settings(config: SearchConfig, space: SearchSpace, dataset: str) -> dict[str, Any]:
    """What decides a search's trajectory; a checkpoint resumes only the search it came from.
    Not the process count nor the device: the global batch and the paths do not depend on them."""
    return {**asdict(config), "space": space.name, "dataset": dataset}


def search_on(
    session: Session,
    device: DeviceConfig,
    config: SearchConfig,
    *,
    resume: bool = False,
    space: SearchSpace | str = "proxyless-tiny",
    dataset: str | Dataset = "digits",
    predictor: Predictor | None = None,
    hard_budget: bool = False,
    final_epochs: int = 5,
    measure: bool = True,
    data_dir: Path = Path("data"),
    out_dir: Path | None = None,
    store: MeasurementStore | None = None,
    reporter: Reporter | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> SearchResult:
    """Search `space` on `dataset` against the device's F at `config.target_ms`.

    `resume` continues from the checkpoint in the output folder, if there is one.
    """
    main = session.group.is_main
    reporter = reporter if reporter and main else SilentReporter()
    on_epoch = on_epoch if main else None
    space = load_space(space) if isinstance(space, str) else space
    if predictor is None:
        from latkit.predictors import load_predictor

        predictor = load_predictor(device.name, Path(data_dir), device_file=device.source)
    table = LatencyTable.from_predictor(predictor, space, batch=device.batch_size)
    _, fastest_ms = table.fastest()
    _, slowest_ms = table.slowest()
    target = config.target_ms
    reporter.note(
        f"F on {device.name}: architectures of {space.name} run in {fastest_ms:.4g} .. "
        f"{slowest_ms:.4g} ms predicted; target {target:g} ms"
    )
    if hard_budget and target < fastest_ms:
        raise LatkitError(
            f"--target-ms {target:g} is below the fastest architecture of {space.name} on "
            f"{device.name} ({fastest_ms:.4g} ms predicted); raise it or drop --hard-budget"
        )
    data = (
        load_dataset(dataset, space.input_hw, space.in_channels, seed=config.seed)
        if isinstance(dataset, str)
        else dataset
    )
    if data.num_classes != space.num_classes:
        raise LatkitError(
            f"dataset {data.name} has {data.num_classes} classes but space {space.name} "
            f"ends in {space.num_classes} logits"
        )
    out_dir = Path(out_dir or default_out_dir(Path(data_dir), device.name, space.name, target))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "net_config": out_dir / "net.config",
        "history": out_dir / "history.csv",
        "png": out_dir / "search.png",
        "result": out_dir / "result.json",
        "checkpoint": out_dir / CHECKPOINT,
    }

    torch.manual_seed(config.seed)
    # REINFORCE samples whole single-path networks; the binary-gate modes only matter to gradients.
    mode = "single" if config.strategy == "reinforce" else config.mode
    net = session.group.sync_batch_norm(SuperNet(space, mode, seed=config.seed).to(session.device))
    trainer = SearchTrainer(
        net,
        table,
        data,
        replace(config, mode=mode),
        precision=session.precision,
        group=session.group,
    )
    settings = search_settings(config, space, dataset if isinstance(dataset, str) else data.name)
    checkpoint = Checkpointer(paths["checkpoint"], settings, writes=main)
    _resume(trainer, checkpoint, resume, paths["history"] if main else None, reporter)
    started = time.perf_counter() - trainer.progress.seconds
    advance = reporter.task(
        f"searching {space.name} ({config.strategy}, {mode})", trainer.total_steps()
    )
    advance(trainer.steps_done())

    def epoch_done(record: EpochRecord) -> None:
        if main:
            _append_history(paths["history"], record)
        if on_epoch:
            on_epoch(record)

    try:
        history = trainer.run(
            on_epoch=epoch_done, on_step=lambda: advance(1), on_checkpoint=checkpoint.save
        )
    except KeyboardInterrupt as exc:
        saved = (
            f"the checkpoint is {checkpoint.path}: run the same command with --resume to continue"
            if checkpoint.current
            else "no epoch had finished, so this search has no checkpoint yet"
        )
        raise SearchInterrupted(f"search {exc or 'interrupted'}; {saved}", quiet=not main) from None
    probs = net.probs()
    argmax = argmax_arch(probs)
    arch = project_to_budget(probs, table, target) if hard_budget else argmax
    search_s = time.perf_counter() - started

    network = space.network(arch, batch=device.batch_size, name=f"{space.name}-{target:g}ms")
    predicted = predictor.predict_network(network.ops)
    if main:
        write_net_config(network, paths["net_config"])
    if history and main:
        plot_history(
            history,
            target,
            paths["png"],
            f"{space.name} on {device.name}: {config.strategy}, {config.loss}, {mode}",
        )
    else:
        paths.pop("png")

    accuracy = None
    if final_epochs > 0:
        model = trainable_network(network, seed=config.seed)
        steps = final_epochs * max(1, len(data.train) // config.batch_size)
        advance = reporter.task(f"training the found network ({final_epochs} epochs)", steps)
        accuracy = train_network(
            model,
            data,
            final_epochs,
            lr=config.lr,
            batch_size=config.batch_size,
            seed=config.seed,
            on_step=lambda: advance(1),
            precision=session.precision,
            group=session.group,
        )

    measured = measure_network(device, network, store, reporter) if measure and main else None

    result = SearchResult(
        arch=tuple(arch),
        names=tuple(candidate_name(layer.candidates[i]) for layer, i in zip(space.layers(), arch)),
        network=network,
        target_ms=target,
        predicted_ms=predicted,
        measured_ms=measured,
        accuracy=accuracy,
        search_s=search_s,
        argmax_arch=tuple(argmax),
        argmax_ms=table.of_arch(argmax),
        history=history,
        paths=paths,
        probs=tuple(probs),
        train_device=str(session.device),
        world_size=session.group.world_size,
        rank=session.group.rank,
    )
    if main:
        write_json(paths["result"], result.to_json())
    return result


def _resume(
    trainer: SearchTrainer,
    checkpoint: Checkpointer,
    resume: bool,
    history: Path | None,
    reporter: Reporter,
) -> None:
    """Load the checkpoint when asked to (and rewrite `history` to match it), else start over."""
    if resume and checkpoint.restore(trainer):
        done = trainer.progress
        reporter.note(
            f"resuming {checkpoint.path}: {done.epoch} epoch(s) and {done.step} step(s) done"
        )
    elif resume:
        reporter.note(f"--resume: no checkpoint in {checkpoint.path.parent} yet; starting")
    elif checkpoint.exists():
        reporter.note(f"starting over; --resume would continue from {checkpoint.path}")
    if history is not None:
        history.unlink(missing_ok=True)
        for record in trainer.history:
            _append_history(history, record)


def measure_network(
    device: DeviceConfig,
    network: Network,
    store: MeasurementStore | None = None,
    reporter: Reporter | None = None,
) -> float:
    """Median end-to-end latency of `network` on the device, with the device's profiler."""
    from latkit.profilers import ProfilerOptions, get_profiler
    from latkit.profilers.session import time_network

    reporter = reporter or SilentReporter()
    profiler = get_profiler(device, ProfilerOptions(reporter=reporter))
    try:
        advance = reporter.task(f"timing the found network on {device.name}", 1)
        stats = time_network(profiler, store, network, origin="search", reuse=False)
        advance(1)
    finally:
        profiler.close()
    return stats.median_ms


HISTORY_FIELDS = (
    "epoch",
    "phase",
    "train_loss",
    "val_acc",
    "expected_ms",
    "entropy",
    "arch_steps",
    "seconds",
    "arch",
)


def _append_history(path: Path, record: EpochRecord) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(HISTORY_FIELDS)
        row = record.to_json()
        row["arch"] = "-".join(map(str, record.arch))
        writer.writerow([row[k] for k in HISTORY_FIELDS])
