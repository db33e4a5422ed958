"""The search loop: weight steps on the training split, architecture steps on the validation split.

As in ProxylessNAS's code: weights by SGD (momentum 0.9, Nesterov, cosine schedule, restarted
after the weights-only warm-up), architecture by Adam (betas (0, 0.999): with β1 = 0 a logit
without gradient does not move), one architecture step every 5 weight steps. The arch lr and the
loss default to `latkit.search.defaults` (0.03, target-seeking), not ProxylessNAS's 1e-3 and
mul-log: digits gives ~10^2 arch steps where ImageNet gave ~10^5.
How an architecture step is taken is a strategy, registered by name (`gradient`, `reinforce`).

The trainer runs on the supernet's device, optionally under autocast (`Precision`), and as one rank
of a data-parallel group (`DataParallel`): it draws each global batch from its own generator and
loads this rank's share. Where the loop stands (epoch, step, batch orders, RNG states) is explicit
state, so `state_dict()` taken at a step boundary resumes to the same result as an uninterrupted
run. SIGINT/SIGTERM finish the current step, save a checkpoint and raise KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latkit.errors import LatkitError
from latkit.registry import Registry
from latkit.search import defaults
from latkit.search.datasets import Dataset, DataSplit, index_batches
from latkit.search.distributed import DataParallel
from latkit.search.latency import LatencyTable
from latkit.search.losses import LOSSES, LossFn, get_loss
from latkit.search.mixed_op import MODES, frozen_bn_stats
from latkit.search.placement import Precision
from latkit.search.supernet import SuperNet


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search, apart from the space, the data and F.

    Epochs, loss, arch lr, strategy, mode and batch size default to `latkit.search.defaults`,
    the values `latkit search` and `latkit quickstart` start from too: the target-seeking loss
    and an arch lr of 0.03 (ProxylessNAS's mul-log stays available by name; its lr 1e-3 suits
    ~10^5 ImageNet arch steps, not the ~10^2 of digits). Adam's betas (0, 0.999) and an arch step
    every 5 weight steps are ProxylessNAS's; the weight lr and batch size suit digits on a CPU
    (ImageNet used 0.025 at batch 256).
    """

    target_ms: float
    epochs: int = defaults.EPOCHS
    warmup_epochs: int = defaults.WARMUP_EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    mode: str = defaults.MODE
    strategy: str = defaults.STRATEGY
    loss: str = defaults.LOSS
    loss_params: dict[str, float] = field(default_factory=dict)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    arch_lr: float = defaults.ARCH_LR
    arch_betas: tuple[float, float] = (0.0, 0.999)
    arch_every: int = 5
    rl_batch: int = 10
    rl_exponent: float = -0.1
    rl_baseline_weight: float = 0.99
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("target_ms", "lr", "arch_lr"):
            _positive(name, getattr(self, name))
        for name in ("momentum", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise LatkitError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        for name in ("epochs", "warmup_epochs", "seed"):
            if getattr(self, name) < 0:
                raise LatkitError(f"--{name.replace('_', '-')} must be >= 0")
        if self.batch_size < 2 or self.arch_every < 1 or self.rl_batch < 1:
            raise LatkitError("batch size must be >= 2, arch_every and rl_batch >= 1")
        STRATEGIES.check(self.strategy)
        LOSSES.check(self.loss)
        if self.mode not in MODES:
            raise LatkitError(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")


def _positive(name: str, value: float) -> None:
    """A NaN or infinite target or learning rate would train for hours towards nothing."""
    if not (math.isfinite(value) and value > 0):
        raise LatkitError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")


@dataclass(frozen=True)
class EpochRecord:
    """One line of search history; also what the per-epoch progress line shows."""

    epoch: int
    phase: str
    train_loss: float
    val_acc: float
    expected_ms: float
    entropy: float
    arch: tuple[int, ...]
    arch_steps: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = list(self.arch)
        return data


class ArchStrategy(Protocol):
    """How α moves. `optimizer` is α's optimizer (data-parallel ranks average its gradients);
    `state_dict` holds everything a resumed search needs: the optimizer's and the loss's state."""

    optimizer: torch.optim.Optimizer

    def step(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        """Take one architecture step on a validation batch; return its loss (or -reward)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on besides α: optimiser state, loss state."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class GradientStep:
    """ProxylessNAS's gradient step: binary gates for CE, E[LAT] for the latency term.

    Adam takes the loss's gradient; a loss that steers latency itself (`lagrangian`) then takes
    its latency step on α, after the two-path rescale, so that step is not undone by it.
    """

    def __init__(
        self, net: SuperNet, table: LatencyTable, config: SearchConfig, loss: LossFn | None = None
    ) -> None:
        self.net, self.table, self.config = net, table, config
        self.loss = loss or get_loss(config.loss, **config.loss_params)
        self.optimizer = torch.optim.Adam(
            net.arch_parameters(), lr=config.arch_lr, betas=config.arch_betas
        )
        self.last_expected_ms = float("nan")

    def step(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        net = self.net
        net.sample("arch", generator)
        with weights_frozen(net):
            ce = F.cross_entropy(net(x), y)
            expected = self.table.expected(net.arch_parameters())
            loss = self.loss(ce, expected, self.config.target_ms)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if net.mode == "two-path":
            net.rescale()
        self.loss.latency_step(net.arch_parameters(), self.table, self.config.target_ms)
        self.last_expected_ms = expected.item()
        return loss.item()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "loss": self.loss.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss.load_state_dict(state["loss"])


#: how an architecture step is taken, by `--strategy` name
STRATEGIES: Registry[type[ArchStrategy]] = Registry("--strategy")
STRATEGIES.register("gradient", GradientStep)
STRATEGIES.register("reinforce", "latkit.search.reinforce:ReinforceStep")


def make_strategy(net: SuperNet, table: LatencyTable, config: SearchConfig) -> ArchStrategy:
    return STRATEGIES.create(config.strategy, net, table, config)


class weights_frozen:
    """Architecture steps need gradients for α and activations, never for the weights."""

    def __init__(self, net: SuperNet) -> None:
        self.params = [p for p in net.weight_parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p in self.params:
            p.requires_grad_(True)


def cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * step / max(1, total)))


def weight_optimizer(
    params, lr: float, momentum: float = 0.9, weight_decay: float = 4e-5
) -> torch.optim.SGD:
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def accuracy(model: nn.Module, split: DataSplit, batch_size: int = 256) -> float:
    """Top-1 accuracy in the model's current mode, without touching BN running statistics.

    Every data-parallel rank evaluates the whole split (in lockstep, as batch norm may sync), so
    every rank gets the figure one process would.
    """
    device = model_device(model)
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad(), frozen_bn_stats(model):
        for x, y in split.batches(batch_size):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += (model(x).argmax(1) == y).sum()
    return int(correct) / max(1, len(split))


@dataclass
class Progress:
    """Where the search loop stands, at a step boundary: all a resumed run needs besides the
    modules, optimizers and RNG states."""

    epoch: int = 0
    step: int = 0
    train_order: torch.Tensor | None = None
    val_order: torch.Tensor | None = None
    val_next: int = 0
    losses: list[float] = field(default_factory=list)
    arch_losses: list[float] = field(default_factory=list)
    epoch_seconds: float = 0.0
    arch_seconds: float = 0.0
    seconds: float = 0.0


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG a search touches: its own generator, torch's (CPU and CUDA), numpy's, Python's."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "search": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["search"])
    torch.set_rng_state(state["torch"])
    if (
        state["cuda"]
        and torch.cuda.is_available()
        and len(state["cuda"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(state["cuda"])  # resumed on other hardware: CUDA draws none
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


@contextlib.contextmanager
def stop_requests() -> Iterator[Callable[[], bool]]:
    """Turn the first SIGINT/SIGTERM into a request to stop at the next step boundary.

    A second signal acts as usual (the handlers are restored after the first). Signals can only
    be caught on the main thread; elsewhere nothing is installed.
    """
    requested = False
    if threading.current_thread() is not threading.main_thread():
        yield lambda: requested
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    def request(*_: object) -> None:
        nonlocal requested
        requested = True
        restore()

    for s in signals:
        signal.signal(s, request)
    try:
        yield lambda: requested
    finally:
        restore()


class SearchTrainer:
    """Warm-up epochs train weights only; search epochs interleave architecture steps.

    Trains on the supernet's device. `group` makes it one rank of a data-parallel search: the
    global batch is `config.batch_size`, split evenly over the ranks.
    """

    def __init__(
        self,
        net: SuperNet,
        table: LatencyTable,
        data: Dataset,
        config: SearchConfig,
        strategy: ArchStrategy | None = None,
        *,
        precision: Precision | None = None,
        group: DataParallel | None = None,
    ) -> None:
        self.device = model_device(net)
        self.precision = precision or Precision(self.device)
        self.group = group or DataParallel()
        self.group.check_batch(config.batch_size)
        table = table.to(self.device)
        self.net, self.table, self.data, self.config = net, table, data, config
        self.strategy = strategy or make_strategy(net, table, config)
        self.group.average_before_step(self.strategy.optimizer)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = weight_optimizer(
            net.weight_parameters(), config.lr, config.momentum, config.weight_decay
        )
        self.scaler = self.precision.scaler()
        self.history: list[EpochRecord] = []
        self.progress = Progress()
        self._val: Iterator | None = None

    @property
    def arch_seconds(self) -> float:
        return self.progress.arch_seconds

    def steps_per_epoch(self) -> int:
        return max(1, len(self.data.train) // self.config.batch_size)

    def total_steps(self) -> int:
        return (self.config.warmup_epochs + self.config.epochs) * self.steps_per_epoch()

    def steps_done(self) -> int:
        return self.progress.epoch * self.steps_per_epoch() + self.progress.step

    def _to_device(self, batch: tuple[torch.Tensor, torch.Tensor]):
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def _next_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next validation batch of the endless, reshuffled stream of arch-step batches."""
        p, size = self.progress, self.config.batch_size
        if p.val_order is None or p.val_next >= len(index_batches(p.val_order, size, True)):
            p.val_order, p.val_next, self._val = (
                torch.randperm(len(self.data.val), generator=self.generator),
                0,
                None,
            )
        if self._val is None:
            batches = index_batches(p.val_order, size, True)[p.val_next :]
            self._val = self.data.val.load(self.group.shard(b) for b in batches)
        p.val_next += 1
        return self._to_device(next(self._val))

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.train()
        self.net.sample("weights", self.generator)
        with self.precision.autocast():
            loss = F.cross_entropy(self.net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.group.average_gradients(self.net.weight_parameters())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    def arch_step(self) -> float:
        self.net.train()
        xv, yv = self._next_val()
        started = time.perf_counter()
        with self.precision.autocast(arch=True):
            loss = self.strategy.step(xv, yv, self.generator)
        self.progress.arch_seconds += time.perf_counter() - started
        return loss

    def run(
        self,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_step: Callable[[], None] | None = None,
        on_checkpoint: Callable[[SearchTrainer], None] | None = None,
    ) -> list[EpochRecord]:
        """Train from where `progress` stands to the end. `on_checkpoint` runs after every epoch
        and when a stop is requested; every rank calls it (the caller decides who writes)."""
        config, p = self.config, self.progress
        per_epoch = self.steps_per_epoch()
        phases = ["warmup"] * config.warmup_epochs + ["search"] * config.epochs
        with stop_requests() as stop_requested:
            while p.epoch < len(phases):
                phase = phases[p.epoch]
                phase_epoch = p.epoch - (0 if phase == "warmup" else config.warmup_epochs)
                total = per_epoch * (config.warmup_epochs if phase == "warmup" else config.epochs)
                started = time.perf_counter() - p.epoch_seconds
                if p.train_order is None:
                    p.train_order = torch.randperm(len(self.data.train), generator=self.generator)
                batches = index_batches(p.train_order, config.batch_size, drop_last=True)
                loader = self.data.train.load(self.group.shard(b) for b in batches[p.step :])
                for i, batch in enumerate(loader, start=p.step):
                    step_started = time.perf_counter()
                    for group in self.optimizer.param_groups:
                        group["lr"] = cosine_lr(config.lr, phase_epoch * per_epoch + i, total)
                    p.losses.append(self.weight_step(*self._to_device(batch)))
                    if phase == "search" and (i + 1) % config.arch_every == 0:
                        p.arch_losses.append(self.arch_step())
                    p.step = i + 1
                    p.seconds += time.perf_counter() - step_started
                    if on_step:
                        on_step()
                    if self.group.any(stop_requested(), self.device):
                        p.epoch_seconds = time.perf_counter() - started
                        self._checkpoint(on_checkpoint)
                        raise KeyboardInterrupt(f"stopped at epoch {p.epoch + 1}, step {p.step}")
                record_started = time.perf_counter()
                record = self._record(p.epoch + 1, phase, p.losses, p.arch_losses, started)
                p.seconds += time.perf_counter() - record_started
                self.history.append(record)
                self.progress = p = Progress(
                    epoch=p.epoch + 1,
                    val_order=p.val_order,
                    val_next=p.val_next,
                    arch_seconds=p.arch_seconds,
                    seconds=p.seconds,
                )
                self._checkpoint(on_checkpoint)
                if on_epoch:
                    on_epoch(record)
        return self.history

    def _checkpoint(self, on_checkpoint: Callable[[SearchTrainer], None] | None) -> None:
        if on_checkpoint:
            on_checkpoint(self)
            self.group.barrier()

    def _record(
        self, epoch: int, phase: str, losses: list[float], arch_losses: list[float], started
    ) -> EpochRecord:
        net = self.net
        net.train()
        net.sample("fixed")
        with self.precision.autocast():
            val_acc = accuracy(net, self.data.val)
        with torch.no_grad():
            expected = float(self.table.expected(net.arch_parameters()))
        train_loss, arch_loss = self.group.mean(
            [sum(losses) / max(1, len(losses)), sum(arch_losses) / max(1, len(arch_losses))],
            self.device,
        )
        extra = {"arch_loss": arch_loss} if arch_losses else {}
        return EpochRecord(
            epoch=epoch,
            phase=phase,
            train_loss=train_loss,
            val_acc=val_acc,
            expected_ms=expected,
            entropy=net.entropy(),
            arch=net.arch(),
            arch_steps=len(arch_losses),
            seconds=time.perf_counter() - started,
            extra=extra,
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (loadable with
        `torch.load(weights_only=True)`)."""
        return {
            "net": self.net.state_dict(),
            "weights": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "progress": asdict(self.progress),
            "history": [r.to_json() for r in self.history],
            "rng": rng_state(self.generator),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["weights"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["strategy"])
        self.progress = Progress(**state["progress"])
        self.history = [EpochRecord(**{**r, "arch": tuple(r["arch"])}) for r in state["history"]]
        set_rng_state(self.generator, state["rng"])
        self._val = None


def train_network(
    model: nn.Module,
    data: Dataset,
    epochs: int,
    *,
    lr: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    on_step: Callable[[], None] | None = None,
    precision: Precision | None = None,
    group: DataParallel | None = None,
) -> float:
    """Train a standalone network from scratch (SGD, cosine) and return its test accuracy.

    Trains on `precision.device` (the CPU by default); with `group`, data-parallel like the
    search, so every rank ends with the same network and accuracy.
    """
    precision = precision or Precision()
    group = group or DataParallel()
    group.check_batch(batch_size)
    device = precision.device
    model = group.sync_batch_norm(model.to(device))
    generator = torch.Generator().manual_seed(seed)
    optimizer = weight_optimizer(model.parameters(), lr)
    scaler = precision.scaler()
    per_epoch = max(1, len(data.train) // batch_size)
    total = epochs * per_epoch
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(data.train), generator=generator)
        batches = index_batches(order, batch_size, drop_last=True)
        for i, (x, y) in enumerate(data.train.load(group.shard(b) for b in batches)):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for param_group in optimizer.param_groups:
                param_group["lr"] = cosine_lr(lr, epoch * per_epoch + i, total)
            with precision.autocast():
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            group.average_gradients(model.parameters())
            scaler.step(optimizer)
            scaler.update()
            if on_step:
                on_step()
    model.eval()
    with precision.autocast():
        return accuracy(model, data.test)
