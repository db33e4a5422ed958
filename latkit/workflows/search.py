"""A whole hardware-aware search: F -> supernet -> architecture -> timed on the device, in a loop.

`run_search` loads the device's predictor, searches, derives the most probable architecture within
the target's window, and times it end to end with the device's own profiler. Where predicted and
measured disagree by more than `TOLERANCE` (or the measurement misses the target), the timing
joins the device's calibration networks, F's network terms are refit around the target
(`fit_overhead`), the architecture is derived again and timed again: at most `ROUNDS` rounds, each
reported. The network the loop settles on is then timed once more, afresh: that timing is the
result's, and F's error is that of its prediction for the network in the round it was first
derived, before any refit saw a timing of it (a round's timing reused for the result, or an error
from a refit on the network's own timing, would report an error of ~0 by construction). Then the
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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.ops import OpSpec
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
from latkit.workflows.defaults import ARCH_LR, LOSS, ROUNDS

if TYPE_CHECKING:
    from latkit.profilers.base import Profiler

#: predicted vs measured, and measured vs T, agree when within this share
TOLERANCE = 0.05
#: what a search leaves in its output folder; a new search there would replace them
RESULT_FILES = ("net.config", "result.json", "history.csv", CHECKPOINT)
#: the files a search writes beside them, cleared with them by `--overwrite`
OTHER_FILES = ("search.png", "predictor.json")

#: a whole-network timing as F's refits take it: (ops, measured ms)
Sample = tuple[tuple[OpSpec, ...], float]


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
class Round:
    """One derive-and-time round of the closed loop. `predicted_ms` is F's prediction from the
    round `predicted_round` in which this architecture was first derived, before its timing
    reached F: a later refit has seen it, so its prediction would say nothing of F. `seen`:
    F's samples already held a timing of it then (a calibration network, or an earlier
    search's), so even that prediction is not blind."""

    index: int
    arch: tuple[int, ...]
    predicted_ms: float
    measured_ms: float
    timing_s: float
    refit_s: float = 0.0
    predicted_round: int = 0
    seen: bool = False

    @property
    def error(self) -> float:
        """(predicted − measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.index,
            "arch_index": list(self.arch),
            "predicted_ms": self.predicted_ms,
            "predicted_round": self.predicted_round or self.index,
            "seen": self.seen,
            "measured_ms": self.measured_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class LoopResult:
    """The closed loop's rounds, and the network it settled on timed once more, afresh."""

    rounds: tuple[Round, ...]
    final: Round
    measured_ms: float
    timing_s: float


@dataclass
class LoopTerms:
    """F, and the whole-network timings its network terms were last refit on: whether F has
    seen a network's timing decides what its prediction for that network is worth."""

    predictor: LatencyPredictor
    near_ms: float
    samples: list[Sample] = field(default_factory=list)

    def refit(self, samples: list[Sample]) -> None:
        """Refit F's network terms near `near_ms` on `samples` (`fit_overhead`, nothing else)."""
        self.samples = list(samples)
        self.predictor.fit_overhead(self.samples, near_ms=self.near_ms)

    def holds(self, timed: Sequence[OpSpec]) -> bool:
        """Whether F was refit on a timing of this network (`timed`: its ops as its device
        times them)."""
        keys = tuple(op.key for op in timed)
        return any(tuple(op.key for op in ops) == keys for ops, _ in self.samples)


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


def landing(target_ms: float, hard: bool, tolerance: float = TOLERANCE) -> tuple[float, float]:
    """Where a measured latency lands on T: [T(1−2·tol), T] with a hard budget, else T(1±tol)."""
    if hard:
        return target_ms * (1 - 2 * tolerance), target_ms
    return target_ms * (1 - tolerance), target_ms * (1 + tolerance)


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
    space: SearchSpace | str = "proxyless-tiny",
    dataset: str | Dataset = "digits",
    predictor: LatencyPredictor | None = None,
    hard_budget: bool = False,
    final_epochs: int = 5,
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
    inputs have passed their checks, where anything trains: a refused search says one thing."""
    group = session.group
    main = group.is_main
    reporter = reporter if reporter and main else SilentReporter()
    on_epoch = on_epoch if main else None
    space = load_space(space) if isinstance(space, str) else space
    if rounds < 1:
        raise LatkitError(f"--rounds must be >= 1, got {rounds}")
    name = device if isinstance(device, str) else device.name
    if predictor is None:
        source = None if isinstance(device, str) else device.source
        predictor = load_predictor(name, Path(data_dir), device_file=source)
    batch = int(predictor.meta.get("batch", 1)) if isinstance(device, str) else device.batch_size
    terms = LoopTerms(space_predictor(predictor, space, batch), config.target_ms)
    predictor = terms.predictor
    timer = measure_on or (None if isinstance(device, str) else device)
    note = ""
    if measure and timer is None:
        note = (
            f"nothing was measured: {name} is imported data with no profiler; the latencies are "
            "F's predictions (--measure-on FILE times the result on a device)"
        )
    measure = measure and timer is not None
    target = config.target_ms
    table = LatencyTable.from_predictor(predictor, space, batch=batch)
    _, fastest_ms = table.fastest()
    _, slowest_ms = table.slowest()
    check_target(target, (fastest_ms, slowest_ms), space.name, name)
    reporter.note(
        f"F on {name}: architectures of {space.name} run in {fastest_ms:.4g} .. "
        f"{slowest_ms:.4g} ms predicted; target {target:g} ms"
    )
    env_id = predictor.meta.get("env_id")
    if measure and store is not None and timer is not None and timer.name == name and env_id:
        samples = stored_networks(store, name, env_id)
        if samples:
            terms.refit(samples)
            table = LatencyTable.from_predictor(predictor, space, batch=batch)
            reporter.note(
                f"F's network terms refit near {target:g} ms on {len(samples)} stored networks "
                f"(overhead {predictor.overhead_ms:+.4f} ms, per op {predictor.per_op_ms:.4f} ms)"
            )
    if hard_budget and target < table.fastest()[1]:
        raise LatkitError(
            f"--target-ms {target:g} is below the fastest architecture of {space.name} on "
            f"{name} ({table.fastest()[1]:.4g} ms predicted); raise it or drop --hard-budget"
        )
    if hard_budget and config.loss == LOSS and "aim" not in config.loss_params:
        # aim at the middle of the hard window, [T(1-2w), T]
        config = replace(config, loss_params={**config.loss_params, "aim": 1 - WINDOW})
    data = None
    if config.epochs > 0 or final_epochs > 0:
        for line in training_notes:
            reporter.note(line)
        data = (
            load_dataset(dataset, space.input_hw, space.in_channels, seed=config.seed)
            if isinstance(dataset, str)
            else dataset
        )
        if data.num_classes > space.num_classes:
            raise LatkitError(
                f"dataset {data.name} has {data.num_classes} classes but space {space.name} "
                f"ends in {space.num_classes} logits"
            )
    out_dir = Path(out_dir or default_out_dir(Path(data_dir), name, space.name, target))
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite and main:
        clear_results(out_dir)
    paths = {
        "net_config": out_dir / "net.config",
        "history": out_dir / "history.csv",
        "png": out_dir / "search.png",
        "result": out_dir / "result.json",
        "checkpoint": out_dir / CHECKPOINT,
    }

    started = time.perf_counter()
    # REINFORCE samples whole single-path networks; the binary-gate modes only matter to gradients.
    mode = "single" if config.strategy == "reinforce" else config.mode
    history: list[EpochRecord] = []
    if config.epochs > 0:
        assert data is not None
        torch.manual_seed(config.seed)
        net = group.sync_batch_norm(SuperNet(space, mode, seed=config.seed).to(session.device))
        trainer = SearchTrainer(
            net,
            table,
            data,
            replace(config, mode=mode),
            precision=session.precision,
            group=group,
        )
        dataset_name = dataset if isinstance(dataset, str) else data.name
        checkpoint = Checkpointer(
            paths["checkpoint"], search_settings(config, space, dataset_name), writes=main
        )
        _resume(trainer, checkpoint, resume, paths["history"] if main else None, reporter)
        started = time.perf_counter() - trainer.progress.seconds
        reporter.note(
            f"searching {space.name}: {config.strategy} strategy, {config.loss} loss, {mode}"
        )
        advance = reporter.task(f"searching {space.name}", trainer.total_steps())
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
                f"the checkpoint is {checkpoint.path}: run the same command with --resume to "
                "continue"
                if checkpoint.current
                else "no epoch had finished, so this search has no checkpoint yet"
            )
            raise SearchInterrupted(
                f"search {exc or 'interrupted'}; {saved}", quiet=not main
            ) from None
        probs = net.probs()
        if main:
            plot_history(
                history,
                target,
                paths["png"],
                f"{space.name} on {name}: {config.strategy}, {config.loss}, {mode}",
            )
        else:
            paths.pop("png")
    else:
        probs = [np.full(len(c), 1.0 / len(c)) for c in table.layers]
        paths.pop("png")
    argmax = argmax_arch(probs)
    arch = derive(probs, table, target, hard=hard_budget)
    search_s = time.perf_counter() - started

    loop = None
    if measure and main:
        assert timer is not None
        loop = close_loop(
            timer,
            terms,
            space,
            probs,
            arch,
            target,
            hard=hard_budget,
            rounds=rounds,
            batch=batch,
            store=store,
            reporter=reporter,
        )
        if any(r.refit_s > 0 for r in loop.rounds):
            paths["predictor"] = predictor.save(out_dir / "predictor.json")
        arch = loop.final.arch
    arch = group.from_main(arch, session.device)  # the loop ran on rank 0 alone
    network = space.network(arch, batch=batch, name=f"{space.name}-{target:g}ms")
    if main:
        write_net_config(network, paths["net_config"])

    accuracy = None
    if final_epochs > 0:
        assert data is not None
        model = trainable_network(network, seed=config.seed)
        steps = final_epochs * max(1, len(data.train) // config.batch_size)
        advance = reporter.task(f"training it, {final_epochs} epochs", steps)
        accuracy = train_network(
            model,
            data,
            final_epochs,
            lr=config.lr,
            batch_size=config.batch_size,
            seed=config.seed,
            on_step=lambda: advance(1),
            precision=session.precision,
            group=group,
        )

    result = SearchResult(
        arch=tuple(arch),
        names=tuple(candidate_name(layer.candidates[i]) for layer, i in zip(space.layers(), arch)),
        network=network,
        target_ms=target,
        predicted_ms=predictor.predict_network(network.ops)
        if loop is None
        else loop.final.predicted_ms,
        measured_ms=None if loop is None else loop.measured_ms,
        accuracy=accuracy,
        search_s=search_s,
        argmax_arch=tuple(argmax),
        argmax_ms=table.of_arch(argmax),
        range_ms=(fastest_ms, slowest_ms),
        rounds=() if loop is None else loop.rounds,
        measured_on=timer.name if measure and timer is not None else None,
        predicted_round=None if loop is None else loop.final.predicted_round,
        predicted_seen=loop is not None and loop.final.seen,
        final_timing_s=0.0 if loop is None else loop.timing_s,
        hard_budget=hard_budget,
        note=note,
        history=history,
        paths=paths,
        probs=tuple(probs),
        train_device=str(session.device),
        world_size=group.world_size,
        rank=group.rank,
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


def settled(rnd: Round, target_ms: float, hard: bool, range_ms: tuple[float, float]) -> bool:
    """F agrees with the device on this round's network, and (where T is in reach) the
    measurement lands on T."""
    if abs(rnd.error) > TOLERANCE:
        return False
    if not range_ms[0] <= target_ms <= range_ms[1]:
        return True
    low, high = landing(target_ms, hard)
    return low <= rnd.measured_ms <= high


def pick_round(
    done: tuple[Round, ...], target_ms: float, hard: bool, range_ms: tuple[float, float]
) -> Round:
    """The first settled round, else the one whose measurement comes nearest the target (with a
    hard budget: under T first)."""
    for rnd in done:
        if settled(rnd, target_ms, hard, range_ms):
            return rnd
    return min(
        done,
        key=lambda r: (hard and r.measured_ms > target_ms, abs(r.measured_ms / target_ms - 1)),
    )


def close_loop(
    device: DeviceConfig,
    terms: LoopTerms,
    space: SearchSpace,
    probs: list[np.ndarray],
    arch: tuple[int, ...],
    target_ms: float,
    *,
    hard: bool,
    rounds: int = ROUNDS,
    batch: int = 1,
    store: MeasurementStore | None = None,
    reporter: Reporter | None = None,
) -> LoopResult:
    """Derive-and-time rounds on `device` (`loop_rounds`), then the network they settle on
    (`pick_round`) timed once more, afresh: the loop stopped on a round because of that
    round's timing (or F was refit on it), so only a timing taken after the loop says, without
    that selection, what the network runs in."""
    from latkit.profilers import ProfilerOptions, get_profiler

    reporter = reporter or SilentReporter()
    table = LatencyTable.from_predictor(terms.predictor, space, batch=batch)
    range_ms = (table.fastest()[1], table.slowest()[1])
    profiler = get_profiler(device, ProfilerOptions(reporter=reporter))
    try:
        done = loop_rounds(
            profiler,
            terms,
            space,
            probs,
            arch,
            target_ms,
            hard,
            range_ms,
            rounds,
            batch,
            store,
            reporter,
        )
        final = pick_round(done, target_ms, hard, range_ms)
        network = space.network(final.arch, batch=batch, name=f"{space.name}-{target_ms:g}ms")
        measured, timing_s = time_once(
            profiler, store, network, "timing the result afresh", reporter
        )
    finally:
        profiler.close()
    error = (final.predicted_ms - measured) / measured
    reporter.note(
        f"result timed afresh: measured {measured:.4f} ms, measured / T "
        f"{measured / target_ms:.3f}; F's error {error:+.1%} "
        f"({prediction_source(final.predicted_round, final.seen)})"
    )
    return LoopResult(done, final, measured, timing_s)


def prediction_source(round_index: int, seen: bool) -> str:
    """Where a result's prediction came from, in words."""
    if seen:
        return f"predicted in round {round_index}; F had a stored timing of it already"
    return f"predicted in round {round_index}, before F saw its timing"


def loop_rounds(
    profiler: Profiler,
    terms: LoopTerms,
    space: SearchSpace,
    probs: list[np.ndarray],
    arch: tuple[int, ...],
    target_ms: float,
    hard: bool,
    range_ms: tuple[float, float],
    rounds: int,
    batch: int,
    store: MeasurementStore | None,
    reporter: Reporter,
) -> tuple[Round, ...]:
    """Time `arch` once; until a round settles (or `rounds` are done), add the timing to the
    device's calibration networks, refit F's network terms around the target (`fit_overhead`,
    and nothing else: fitting F's level on the loop's own timings makes its next prediction
    right by construction), derive again from `probs`, and time again. Each architecture keeps
    the prediction of the round it was first derived in. Each round is stored (origin `search`)
    and reported. `range_ms`: F's range for the space as the loop began."""
    device = profiler.device
    env_id = profiler.environment().env_id
    first: dict[tuple[int, ...], tuple[int, float, bool]] = {}
    own: list[Sample] = []
    done: list[Round] = []
    for index in range(1, rounds + 1):
        network = space.network(arch, batch=batch, name=f"{space.name}-{target_ms:g}ms")
        timed = tuple(profiler.prepare(network.ops))
        if arch not in first:
            first[arch] = (index, terms.predictor.predict_network(network.ops), terms.holds(timed))
        origin, predicted, seen = first[arch]
        measured, timing_s = time_once(
            profiler, store, network, f"round {index}: timing it on {device.name}", reporter
        )
        rnd = Round(index, arch, predicted, measured, timing_s, predicted_round=origin, seen=seen)
        since = "" if origin == index else f" (predicted in round {origin})"
        reporter.note(
            f"round {index}: predicted {predicted:.4f} ms, measured {measured:.4f} ms "
            f"({rnd.error:+.1%}){since}, measured / T {measured / target_ms:.3f}"
        )
        own.append((timed, measured))
        if settled(rnd, target_ms, hard, range_ms) or index == rounds:
            done.append(rnd)
            break
        started = time.perf_counter()
        terms.refit(stored_networks(store, device.name, env_id) if store is not None else own)
        table = LatencyTable.from_predictor(terms.predictor, space, batch=batch)
        arch = derive(probs, table, target_ms, hard=hard)
        done.append(replace(rnd, refit_s=time.perf_counter() - started))
        predictor = terms.predictor
        reporter.note(
            f"refit F's network terms on {len(terms.samples)} networks near {target_ms:g} ms "
            f"(overhead {predictor.overhead_ms:+.4f} ms, per op {predictor.per_op_ms:.4f} ms)"
        )
    return tuple(done)


def time_once(
    profiler: Profiler,
    store: MeasurementStore | None,
    network: Network,
    description: str,
    reporter: Reporter,
) -> tuple[float, float]:
    """(median ms, seconds taken) of one fresh timing of `network`, stored with origin
    `search`: one timing, like every network F is judged on, not the fastest of several."""
    from latkit.profilers.session import time_network

    advance = reporter.task(description, 1)
    started = time.perf_counter()
    stats = time_network(profiler, store, network, origin="search", reuse=False)
    advance(1)
    return stats.median_ms, time.perf_counter() - started


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
