"""A whole hardware-aware search: F -> supernet -> architecture -> timed on the device, in a loop.

`run_search` loads the device's predictor, searches, derives the most probable architecture within
the target's window, and times it end to end with the device's own profiler. Where predicted and
measured disagree by more than `TOLERANCE` (or the measurement misses the target), the timing
joins the device's calibration networks, F's network terms are refit around the target, the
architecture is derived again and timed again: at most `ROUNDS` rounds, each reported. Then the
chosen architecture is written as `net.config` and trained briefly from scratch. Each epoch is
appended to `history.csv` as it finishes, and checkpointed to `checkpoint.pt`.

Before deriving, F's network terms are refit around the target from the store's whole-network
timings of the device (calibration networks, earlier searches), as after each round.

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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latkit.devices import DeviceConfig
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
from latkit.workflows.defaults import ARCH_LR, LOSS, ROUNDS

#: predicted vs measured, and measured vs T, agree when within this share
TOLERANCE = 0.05
#: timings per round, the fastest kept (a burst of background load only adds time)
TIMINGS = 2


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
    """One derive-and-time round of the closed loop."""

    index: int
    arch: tuple[int, ...]
    predicted_ms: float
    measured_ms: float
    timing_s: float
    refit_s: float = 0.0

    @property
    def error(self) -> float:
        """(predicted − measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.index,
            "arch_index": list(self.arch),
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.measured_ms,
            "error": self.error,
        }


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
    note: str = ""
    history: list[EpochRecord] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    probs: tuple[np.ndarray, ...] = ()
    train_device: str = "cpu"
    world_size: int = 1
    rank: int = 0

    @property
    def loop_s(self) -> float:
        """What the loop added to one timing of the result: further timings, refits, derivations."""
        return sum(r.refit_s for r in self.rounds) + sum(r.timing_s for r in self.rounds[1:])

    def to_json(self) -> dict[str, Any]:
        """The `--json` payload: the six fields the CLI promises, then the loop and provenance."""
        return {
            "arch": list(self.names),
            "target_ms": self.target_ms,
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.measured_ms,
            "accuracy": self.accuracy,
            "search_s": self.search_s,
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
) -> SearchResult:
    """Search `space` on `dataset` against the device's F at `config.target_ms`, then close the
    loop on the device (see the module doc). `device` is a device file's config or the name of
    a device known only by imported data; `measure_on` times the result on another device file.
    With `config.epochs` 0 nothing is searched (the range of F and a derivation come at once).
    `resume` continues from the checkpoint in the output folder, if there is one."""
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
    predictor = copy.deepcopy(predictor)  # the loop refits its network terms
    batch = int(predictor.meta.get("batch", 1)) if isinstance(device, str) else device.batch_size
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
    reporter.note(
        f"F on {name}: architectures of {space.name} run in {fastest_ms:.4g} .. "
        f"{slowest_ms:.4g} ms predicted; target {target:g} ms"
    )
    env_id = predictor.meta.get("env_id")
    if measure and store is not None and timer is not None and timer.name == name and env_id:
        samples = stored_networks(store, name, env_id)
        if samples:
            predictor.fit_overhead(samples, near_ms=target)
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

    done: tuple[Round, ...] = ()
    measured = None
    predicted = None
    if measure and main:
        assert timer is not None
        done = close_loop(
            timer,
            predictor,
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
        if any(r.refit_s > 0 for r in done):
            paths["predictor"] = predictor.save(out_dir / "predictor.json")
        final = pick_round(done, target, hard_budget, (fastest_ms, slowest_ms))
        arch, predicted, measured = final.arch, final.predicted_ms, final.measured_ms
    arch = group.from_main(arch, session.device)  # the loop ran on rank 0 alone
    network = space.network(arch, batch=batch, name=f"{space.name}-{target:g}ms")
    if predicted is None:
        predicted = predictor.predict_network(network.ops)
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
        predicted_ms=predicted,
        measured_ms=measured,
        accuracy=accuracy,
        search_s=search_s,
        argmax_arch=tuple(argmax),
        argmax_ms=table.of_arch(argmax),
        range_ms=(fastest_ms, slowest_ms),
        rounds=done,
        measured_on=timer.name if measure and timer is not None else None,
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
    predictor: LatencyPredictor,
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
) -> tuple[Round, ...]:
    """Time `arch` on `device` (the fastest of `TIMINGS` timings); until a round settles (or
    `rounds` are done), add the timing to the device's calibration networks, refit
    `predictor`'s network terms around the target, set its overhead from this loop's own
    timings, derive again from `probs`, and time again. Each round is stored (origin `search`)
    and reported."""
    from latkit.profilers import ProfilerOptions, get_profiler
    from latkit.profilers.session import time_network_fastest

    reporter = reporter or SilentReporter()
    table = LatencyTable.from_predictor(predictor, space, batch=batch)
    range_ms = (table.fastest()[1], table.slowest()[1])
    done: list[Round] = []
    own: list[tuple[tuple, float]] = []
    profiler = get_profiler(device, ProfilerOptions(reporter=reporter))
    try:
        env_id = profiler.environment().env_id
        for index in range(1, rounds + 1):
            network = space.network(arch, batch=batch, name=f"{space.name}-{target_ms:g}ms")
            predicted = predictor.predict_network(network.ops)
            advance = reporter.task(f"round {index}: timing it on {device.name}", 1)
            started = time.perf_counter()
            stats = time_network_fastest(profiler, store, network, origin="search", repeats=TIMINGS)
            advance(1)
            rnd = Round(index, arch, predicted, stats.median_ms, time.perf_counter() - started)
            reporter.note(
                f"round {index}: predicted {predicted:.4f} ms, measured {rnd.measured_ms:.4f} ms "
                f"({rnd.error:+.1%}), measured / T {rnd.measured_ms / target_ms:.3f}"
            )
            own.append((tuple(profiler.prepare(network.ops)), rnd.measured_ms))
            if settled(rnd, target_ms, hard, range_ms) or index == rounds:
                done.append(rnd)
                break
            started = time.perf_counter()
            samples = stored_networks(store, device.name, env_id) if store is not None else own
            predictor.fit_overhead(samples, near_ms=target_ms)  # its per-op term
            predictor.fit_level(own)  # the level of the networks this loop derives
            table = LatencyTable.from_predictor(predictor, space, batch=batch)
            arch = derive(probs, table, target_ms, hard=hard)
            done.append(replace(rnd, refit_s=time.perf_counter() - started))
            reporter.note(
                f"refit F's network terms on {len(samples)} networks near {target_ms:g} ms "
                f"(overhead {predictor.overhead_ms:+.4f} ms, per op {predictor.per_op_ms:.4f} ms)"
            )
    finally:
        profiler.close()
    return tuple(done)


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
