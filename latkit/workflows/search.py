"""A whole hardware-aware search: F -> supernet -> architecture -> timed on the device, in a loop.

`run_search` loads the device's predictor, searches, derives the most probable architecture within
the target's window, and times it end to end with the device's own profiler, deriving and timing
again while predicted and measured disagree (the closed loop, `latkit.workflows.loop`: at most
`ROUNDS` rounds, each reported; the network it settles on is timed once more, afresh, and F's
error is that of its prediction from the round the network was first derived in). Then the
chosen architecture is written as `net.config` and trained briefly from scratch. Each epoch is
appended to `history.csv` as it finishes, and checkpointed to `checkpoint.pt`.

Before deriving, F's network terms are refit around the target from the store's whole-network
timings of the device (calibration networks, earlier searches), as after each round. A target
outside F's range for the space is refused before anything is trained or stored.

A device known only by imported data (no device file, no profiler) is searched against its F all
the same; nothing is measured unless `measure_on` names a device file to time the result on.
A dataset with fewer classes than the space's logits trains on the first ones (digits on
proxyless-mobile's 1000 logits), so the network searched is the space's own.

The supernet trains on `train_device` (possibly under autocast); launched by torchrun, every process
searches its share of each global batch, and rank 0 alone writes files and closes the loop on the
device, then hands the architecture it settled on to the other ranks for the final training.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latkit.devices import DeviceConfig, device_name
from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.predictors import LatencyPredictor, load_predictor
from latkit.predictors.fit import stored_networks
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
from latkit.search.export import WINDOW, argmax_arch, derive, write_net_config
from latkit.search.latency import LatencyTable
from latkit.search.plots import plot_history
from latkit.search.supernet import SuperNet, trainable_network
from latkit.search.trainer import EpochRecord, SearchConfig, SearchTrainer, train_network
from latkit.spaces import Network, SearchSpace, candidate_name, load_space
from latkit.store import MeasurementStore
from latkit.workflows.defaults import DATASET, FINAL_EPOCHS, LOSS, ROUNDS, SPACE
from latkit.workflows.loop import LoopResult, LoopTerms, Round, close_loop, landing

#: what a search leaves in its output folder; a new search there would replace them
RESULT_FILES = ("net.config", "result.json", "history.csv", CHECKPOINT)
#: the files a search writes beside them, cleared with them by `--overwrite`
OTHER_FILES = ("search.png", "predictor.json")


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
    range_ms: tuple[float, float] = (0.0, 0.0)
    rounds: tuple[Round, ...] = ()
    measured_on: str | None = None
    predicted_round: int | None = None
    predicted_seen: bool = False
    final_timing_s: float = 0.0
    hard_budget: bool = False
    note: str = ""
    history: list[EpochRecord] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    probs: tuple[np.ndarray, ...] = ()
    train_device: str = "cpu"
    world_size: int = 1
    rank: int = 0

    @property
    def loop_s(self) -> float:
        """What the loop added to the one fresh timing of the result: its rounds' timings,
        refits and derivations."""
        return sum(r.refit_s + r.timing_s for r in self.rounds)

    @property
    def error(self) -> float | None:
        """F's error on the result: (predicted − measured) / measured, None if nothing was
        measured. The prediction is from the round the network was first derived in."""
        if self.measured_ms is None:
            return None
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    @property
    def budget_missed(self) -> str | None:
        """With a hard budget, the line saying by how much the fresh measurement misses its
        window [T(1−2·tol), T]; None where it lands, or where nothing was measured."""
        if not self.hard_budget or self.measured_ms is None:
            return None
        low, high = landing(self.target_ms, hard=True)
        measured = self.measured_ms
        if measured > high:
            return (
                f"hard budget missed: measured {measured:.4g} ms is {measured / high - 1:.1%} "
                f"over T {high:.4g} ms"
            )
        if measured < low:
            return (
                f"hard budget missed: measured {measured:.4g} ms is {1 - measured / low:.1%} "
                f"under the window's lower edge {low:.4g} ms ({low / high:g} T)"
            )
        return None

    def to_json(self) -> dict[str, Any]:
        """The `--json` payload: the six fields the CLI promises, then F's error on the result
        (with the round its prediction came from), the loop and provenance."""
        return {
            "arch": list(self.names),
            "target_ms": self.target_ms,
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.measured_ms,
            "accuracy": self.accuracy,
            "search_s": self.search_s,
            "error": self.error,
            "predicted_round": self.predicted_round,
            "predicted_seen": self.predicted_seen,
            "hard_budget": self.hard_budget,
            "budget_missed": self.budget_missed,
            "final_timing_s": self.final_timing_s,
            "range_ms": list(self.range_ms),
            "rounds": [r.to_json() for r in self.rounds],
            "loop_s": self.loop_s,
            "measured_on": self.measured_on,
            "note": self.note,
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


def previous_results(out_dir: Path) -> list[str]:
    """The files of an earlier search in `out_dir` (net.config, result, history, checkpoint)."""
    return [name for name in RESULT_FILES if (Path(out_dir) / name).exists()]


def check_out_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds an earlier search's results, unless told to continue it
    (`resume`) or replace it (`overwrite`): a second search with the same device, space and T
    goes to the same default folder, and would silently replace the first one's results."""
    if resume and overwrite:
        raise LatkitError(
            "--resume continues the search in the output folder, --overwrite "
            "replaces it: give one of them"
        )
    found = previous_results(out_dir)
    if found and not (resume or overwrite):
        raise LatkitError(
            f"{out_dir} holds an earlier search ({', '.join(found)}): --resume continues it, "
            "--overwrite replaces it, --out DIR searches elsewhere"
        )


def clear_results(out_dir: Path) -> None:
    """Remove an earlier search's files from `out_dir`, so none of them outlives `--overwrite`
    beside the new ones (a history of another run, a plot of it)."""
    for name in (*RESULT_FILES, *OTHER_FILES):
        (Path(out_dir) / name).unlink(missing_ok=True)


def check_target(target_ms: float, range_ms: tuple[float, float], space: str, device: str) -> None:
    """Refuse a target outside F's predicted range for the space: no architecture can land on
    it, and a search towards it only drives every choice to one end of the space."""
    fastest, slowest = range_ms
    span = f"F predicts {space} on {device} at {fastest:.4g} .. {slowest:.4g} ms"
    if target_ms < fastest:
        raise LatkitError(
            f"--target-ms {target_ms:g} is {1 - target_ms / fastest:.1%} below the fastest "
            f"architecture: {span}"
        )
    if target_ms > slowest:
        raise LatkitError(
            f"--target-ms {target_ms:g} is {target_ms / slowest - 1:.1%} above the slowest "
            f"architecture: {span}"
        )


def run_search(
    device: DeviceConfig | str,
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


def space_predictor(
    predictor: LatencyPredictor, space: SearchSpace, batch: int
) -> LatencyPredictor:
    """F as it prices this space's networks: with the network terms of their group alone
    (`for_network`), so that the latency table the search derives with, the predictions it
    reports and the refits of its loop are one and the same F. A copy: the loop refits it."""
    sample = space.network(tuple(0 for _ in space.layers()), batch=batch)
    return copy.deepcopy(predictor.for_network(sample.ops))


def search_settings(config: SearchConfig, space: SearchSpace, dataset: str) -> dict[str, Any]:
    """What decides a search's trajectory; a checkpoint resumes only the search it came from.
    Not the process count nor the device: the global batch and the paths do not depend on them."""
    return {**asdict(config), "space": space.name, "dataset": dataset}


def search_on(
    session: Session,
    device: DeviceConfig | str,
    config: SearchConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    space: SearchSpace | str = SPACE,
    dataset: str | Dataset = DATASET,
    predictor: LatencyPredictor | None = None,
    hard_budget: bool = False,
    final_epochs: int = FINAL_EPOCHS,
    measure: bool = True,
    measure_on: DeviceConfig | None = None,
    rounds: int = ROUNDS,
    data_dir: Path = Path("data"),
    out_dir: Path | None = None,
    store: MeasurementStore | None = None,
    reporter: Reporter | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    training_notes: Sequence[str] = (),
) -> SearchResult:
    """Search `space` on `dataset` against the device's F at `config.target_ms`, then close the
    loop on the device (see the module doc). `device` is a device file's config or the name of
    a device known only by imported data; `measure_on` times the result on another device file.
    With `config.epochs` 0 nothing is searched (the range of F and a derivation come at once).
    `resume` continues from the checkpoint in the output folder, if there is one; `overwrite`
    first removes an earlier search's files from it (`check_out_dir` refuses to, unasked).
    `training_notes` (how the caller set up training, e.g. its threads) are reported once the
    inputs have passed their checks, where anything trains: a refused search says one thing.

    The steps, each a function below: `_start` (F for the space, its range, the target
    checked), `_refit_on_stored` (F's network terms near the target), `_budgeted` (the hard
    budget), `_training_data`, `_output_paths`, `_search_supernet` (the architecture's
    probabilities, from which `derive` takes the architecture), `_settle` (close the loop on
    the device, write net.config), `_train_found`, and `_result`."""
    run = _start(
        session,
        device,
        config.target_ms,
        space=space,
        predictor=predictor,
        measure=measure,
        measure_on=measure_on,
        rounds=rounds,
        data_dir=data_dir,
        reporter=reporter,
    )
    _refit_on_stored(run, store)
    config = _budgeted(run, config, hard_budget)
    data = None
    if config.epochs > 0 or final_epochs > 0:
        data = _training_data(run, config.seed, dataset, training_notes)
    out_dir, paths = _output_paths(
        run, out_dir or default_out_dir(data_dir, run.name, run.space.name, run.target), overwrite
    )
    on_epoch = on_epoch if run.main else None
    started = time.perf_counter()
    if config.epochs > 0:
        assert data is not None
        probs, history, started = _search_supernet(
            run, config, data, dataset, paths, resume=resume, on_epoch=on_epoch
        )
    else:
        probs, history = [np.full(len(c), 1.0 / len(c)) for c in run.table.layers], []
        paths.pop("png")
    argmax = argmax_arch(probs)
    arch = derive(probs, run.table, run.target, hard=hard_budget)
    search_s = time.perf_counter() - started
    arch, network, loop = _settle(
        run, probs, arch, hard=hard_budget, rounds=rounds, store=store, out_dir=out_dir, paths=paths
    )
    accuracy = None
    if final_epochs > 0:
        assert data is not None
        accuracy = _train_found(run, network, data, config, final_epochs)
    result = _result(
        run,
        arch,
        network,
        loop,
        probs=probs,
        argmax=argmax,
        history=history,
        search_s=search_s,
        accuracy=accuracy,
        hard_budget=hard_budget,
        paths=paths,
    )
    if run.main:
        write_json(paths["result"], result.to_json())
    return result


@dataclass
class _Run:
    """What the steps of `search_on` share: the session, the space, the device's F for it
    (`terms`), the table derived from F and F's range for the space, and where the result is
    timed (`timer`; `measure` is whether it is)."""

    session: Session
    reporter: Reporter
    space: SearchSpace
    name: str
    batch: int
    target: float
    terms: LoopTerms
    timer: DeviceConfig | None
    measure: bool
    note: str
    table: LatencyTable
    range_ms: tuple[float, float]

    @property
    def main(self) -> bool:
        """Rank 0 (or the only process): it alone writes files and times on the device."""
        return self.session.group.is_main

    @property
    def predictor(self) -> LatencyPredictor:
        return self.terms.predictor


def _start(
    session: Session,
    device: DeviceConfig | str,
    target: float,
    *,
    space: SearchSpace | str,
    predictor: LatencyPredictor | None,
    measure: bool,
    measure_on: DeviceConfig | None,
    rounds: int,
    data_dir: Path,
    reporter: Reporter | None,
) -> _Run:
    """The device's F for the space (loaded unless given), its range, the target checked
    against it (and said), and where the result will be timed."""
    main = session.group.is_main
    reporter = reporter if reporter and main else SilentReporter()
    space = load_space(space) if isinstance(space, str) else space
    if rounds < 1:
        raise LatkitError(f"--rounds must be >= 1, got {rounds}")
    name = device_name(device)
    if predictor is None:
        source = None if isinstance(device, str) else device.source
        predictor = load_predictor(name, Path(data_dir), device_file=source)
    batch = int(predictor.meta.get("batch", 1)) if isinstance(device, str) else device.batch_size
    terms = LoopTerms(space_predictor(predictor, space, batch), target)
    timer = measure_on or (None if isinstance(device, str) else device)
    note = ""
    if measure and timer is None:
        note = (
            f"nothing was measured: {name} is imported data with no profiler; the latencies are "
            "F's predictions (--measure-on FILE times the result on a device)"
        )
    table = LatencyTable.from_predictor(terms.predictor, space, batch=batch)
    range_ms = (table.fastest()[1], table.slowest()[1])
    check_target(target, range_ms, space.name, name)
    reporter.note(
        f"F on {name}: architectures of {space.name} run in {range_ms[0]:.4g} .. "
        f"{range_ms[1]:.4g} ms predicted; target {target:g} ms"
    )
    measure = measure and timer is not None
    return _Run(
        session, reporter, space, name, batch, target, terms, timer, measure, note, table, range_ms
    )


def _refit_on_stored(run: _Run, store: MeasurementStore | None) -> None:
    """Refit F's network terms near the target on the store's whole-network timings of the
    device (calibration networks, earlier searches), as each round of the loop does, so that
    the first derivation already prices networks as the device runs them."""
    env_id = run.predictor.meta.get("env_id")
    timer = run.timer
    if not (run.measure and store is not None and timer is not None and env_id):
        return
    if timer.name != run.name:
        return
    samples = stored_networks(store, run.name, env_id)
    if not samples:
        return
    run.terms.refit(samples)
    run.table = LatencyTable.from_predictor(run.predictor, run.space, batch=run.batch)
    run.reporter.note(
        f"F's network terms refit near {run.target:g} ms on {len(samples)} stored networks "
        f"(overhead {run.predictor.overhead_ms:+.4f} ms, per op {run.predictor.per_op_ms:.4f} ms)"
    )


def _budgeted(run: _Run, config: SearchConfig, hard_budget: bool) -> SearchConfig:
    """With a hard budget: refuse a target below the fastest architecture, and aim the
    target-seeking loss at the middle of the hard window, [T(1-2w), T]."""
    if not hard_budget:
        return config
    fastest = run.table.fastest()[1]
    if run.target < fastest:
        raise LatkitError(
            f"--target-ms {run.target:g} is below the fastest architecture of {run.space.name} on "
            f"{run.name} ({fastest:.4g} ms predicted); raise it or drop --hard-budget"
        )
    if config.loss == LOSS and "aim" not in config.loss_params:
        return replace(config, loss_params={**config.loss_params, "aim": 1 - WINDOW})
    return config


def _training_data(
    run: _Run, seed: int, dataset: str | Dataset, training_notes: Sequence[str]
) -> Dataset:
    """The dataset (loaded by name, or as given), once it is known to fit the space's logits;
    `training_notes` are said first."""
    for line in training_notes:
        run.reporter.note(line)
    space = run.space
    data = (
        load_dataset(dataset, space.input_hw, space.in_channels, seed=seed)
        if isinstance(dataset, str)
        else dataset
    )
    if data.num_classes > space.num_classes:
        raise LatkitError(
            f"dataset {data.name} has {data.num_classes} classes but space {space.name} "
            f"ends in {space.num_classes} logits"
        )
    return data


def _output_paths(run: _Run, out_dir: Path, overwrite: bool) -> tuple[Path, dict[str, Path]]:
    """The output folder, created (and cleared with `overwrite`), and the files a search
    writes in it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite and run.main:
        clear_results(out_dir)
    return out_dir, {
        "net_config": out_dir / "net.config",
        "history": out_dir / "history.csv",
        "png": out_dir / "search.png",
        "result": out_dir / "result.json",
        "checkpoint": out_dir / CHECKPOINT,
    }


def _search_supernet(
    run: _Run,
    config: SearchConfig,
    data: Dataset,
    dataset: str | Dataset,
    paths: dict[str, Path],
    *,
    resume: bool,
    on_epoch: Callable[[EpochRecord], None] | None,
) -> tuple[list[np.ndarray], list[EpochRecord], float]:
    """Train the supernet (resumed from its checkpoint if asked), each epoch appended to the
    history and checkpointed; (the architecture's probabilities, the history, when the search
    started, counting the time of the epochs a resume skips)."""
    group, main, reporter = run.session.group, run.main, run.reporter
    # REINFORCE samples whole single-path networks; the binary-gate modes only matter to gradients.
    mode = "single" if config.strategy == "reinforce" else config.mode
    torch.manual_seed(config.seed)
    net = group.sync_batch_norm(SuperNet(run.space, mode, seed=config.seed).to(run.session.device))
    trainer = SearchTrainer(
        net,
        run.table,
        data,
        replace(config, mode=mode),
        precision=run.session.precision,
        group=group,
    )
    dataset_name = dataset if isinstance(dataset, str) else data.name
    checkpoint = Checkpointer(
        paths["checkpoint"], search_settings(config, run.space, dataset_name), writes=main
    )
    _resume(trainer, checkpoint, resume, paths["history"] if main else None, reporter)
    started = time.perf_counter() - trainer.progress.seconds
    reporter.note(
        f"searching {run.space.name}: {config.strategy} strategy, {config.loss} loss, {mode}"
    )
    advance = reporter.task(f"searching {run.space.name}", trainer.total_steps())
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
        raise _interrupted(exc, checkpoint, quiet=not main) from None
    if main:
        title = f"{run.space.name} on {run.name}: {config.strategy}, {config.loss}, {mode}"
        plot_history(history, run.target, paths["png"], title)
    else:
        paths.pop("png")
    return net.probs(), history, started


def _interrupted(
    exc: KeyboardInterrupt, checkpoint: Checkpointer, quiet: bool
) -> SearchInterrupted:
    """What an interrupted search says: where its checkpoint is, or that it has none yet."""
    saved = (
        f"the checkpoint is {checkpoint.path}: run the same command with --resume to continue"
        if checkpoint.current
        else "no epoch had finished, so this search has no checkpoint yet"
    )
    return SearchInterrupted(f"search {exc or 'interrupted'}; {saved}", quiet=quiet)


def _settle(
    run: _Run,
    probs: list[np.ndarray],
    arch: tuple[int, ...],
    *,
    hard: bool,
    rounds: int,
    store: MeasurementStore | None,
    out_dir: Path,
    paths: dict[str, Path],
) -> tuple[tuple[int, ...], Network, LoopResult | None]:
    """The architecture and network the search settles on: `arch` as derived, or, where the
    result is timed, what the closed loop settles on (rank 0 alone runs it, and hands the
    architecture on); written as net.config, with F saved beside it where the loop refit it."""
    loop = None
    if run.measure and run.main:
        assert run.timer is not None
        loop = close_loop(
            run.timer,
            run.terms,
            run.space,
            probs,
            arch,
            run.target,
            hard=hard,
            rounds=rounds,
            batch=run.batch,
            store=store,
            reporter=run.reporter,
        )
        if any(r.refit_s > 0 for r in loop.rounds):
            paths["predictor"] = run.predictor.save(out_dir / "predictor.json")
        arch = loop.final.arch
    arch = run.session.group.from_main(arch, run.session.device)  # the loop ran on rank 0 alone
    network = run.space.network(arch, batch=run.batch, name=f"{run.space.name}-{run.target:g}ms")
    if run.main:
        write_net_config(network, paths["net_config"])
    return tuple(arch), network, loop


def _train_found(
    run: _Run, network: Network, data: Dataset, config: SearchConfig, final_epochs: int
) -> float:
    """The found network trained from scratch for `final_epochs`: its test accuracy."""
    model = trainable_network(network, seed=config.seed)
    steps = final_epochs * max(1, len(data.train) // config.batch_size)
    advance = run.reporter.task(f"training it, {final_epochs} epochs", steps)
    return train_network(
        model,
        data,
        final_epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        on_step=lambda: advance(1),
        precision=run.session.precision,
        group=run.session.group,
    )


def _result(
    run: _Run,
    arch: tuple[int, ...],
    network: Network,
    loop: LoopResult | None,
    *,
    probs: list[np.ndarray],
    argmax: tuple[int, ...],
    history: list[EpochRecord],
    search_s: float,
    accuracy: float | None,
    hard_budget: bool,
    paths: dict[str, Path],
) -> SearchResult:
    """The `SearchResult`: with the loop's prediction (from the round the network was first
    derived in) and fresh timing where it ran, else F's prediction alone."""
    space, group = run.space, run.session.group
    return SearchResult(
        arch=tuple(arch),
        names=tuple(candidate_name(layer.candidates[i]) for layer, i in zip(space.layers(), arch)),
        network=network,
        target_ms=run.target,
        predicted_ms=run.predictor.predict_network(network.ops)
        if loop is None
        else loop.final.predicted_ms,
        measured_ms=None if loop is None else loop.measured_ms,
        accuracy=accuracy,
        search_s=search_s,
        argmax_arch=tuple(argmax),
        argmax_ms=run.table.of_arch(argmax),
        range_ms=run.range_ms,
        rounds=() if loop is None else loop.rounds,
        measured_on=run.timer.name if run.measure and run.timer is not None else None,
        predicted_round=None if loop is None else loop.final.predicted_round,
        predicted_seen=loop is not None and loop.final.seen,
        final_timing_s=0.0 if loop is None else loop.timing_s,
        hard_budget=hard_budget,
        note=run.note,
        history=history,
        paths=paths,
        probs=tuple(probs),
        train_device=str(run.session.device),
        world_size=group.world_size,
        rank=group.rank,
    )


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
