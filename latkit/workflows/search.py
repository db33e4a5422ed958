"""A whole hardware-aware search: F -> supernet -> architecture -> timed on the device.

`run_search` loads the device's predictor, searches, derives the architecture (optionally projected
onto the hard budget), writes it as `net.config`, trains it briefly from scratch, and times it end
to end with the device's own profiler, so the predicted figure is checked against a measured one.
Each epoch is appended to `history.csv` as it finishes.
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.reporting import Reporter, SilentReporter
from latkit.search.datasets import Dataset, load_dataset
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
            "files": {k: str(v) for k, v in self.paths.items()},
        }


def default_out_dir(data_dir: Path, device: str, space: str, target_ms: float) -> Path:
    return Path(data_dir) / device / f"search-{space}-{target_ms:g}ms"


def run_search(
    device: DeviceConfig,
    config: SearchConfig,
    *,
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
    """Search `space` on `dataset` against the device's F at `config.target_ms`."""
    reporter = reporter or SilentReporter()
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
    }

    torch.manual_seed(config.seed)
    # REINFORCE samples whole single-path networks; the binary-gate modes only matter to gradients.
    mode = "single" if config.strategy == "reinforce" else config.mode
    net = SuperNet(space, mode, seed=config.seed)
    trainer = SearchTrainer(net, table, data, replace(config, mode=mode))
    started = time.perf_counter()
    advance = reporter.task(
        f"searching {space.name} ({config.strategy}, {mode})", trainer.total_steps()
    )
    paths["history"].unlink(missing_ok=True)

    def epoch_done(record: EpochRecord) -> None:
        _append_history(paths["history"], record)
        if on_epoch:
            on_epoch(record)

    history = trainer.run(on_epoch=epoch_done, on_step=lambda: advance(1))
    probs = net.probs()
    argmax = argmax_arch(probs)
    arch = project_to_budget(probs, table, target) if hard_budget else argmax
    search_s = time.perf_counter() - started

    network = space.network(arch, batch=device.batch_size, name=f"{space.name}-{target:g}ms")
    predicted = predictor.predict_network(network.ops)
    write_net_config(network, paths["net_config"])
    if history:
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
        )

    measured = measure_network(device, network, store, reporter) if measure else None

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
    )
    write_json(paths["result"], result.to_json())
    return result


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
