"""The search loop: weight steps on the training split, architecture steps on the validation split.

Defaults are those of ProxylessNAS's code: weights by SGD (momentum 0.9, Nesterov, cosine schedule,
restarted after the weights-only warm-up), architecture by Adam (lr 1e-3, betas (0, 0.999): with
β1 = 0 a logit without gradient does not move), one architecture step every 5 weight steps.
How an architecture step is taken is a strategy, registered by name (`gradient`, `reinforce`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from latkit.errors import LatkitError
from latkit.registry import Registry
from latkit.search.datasets import Dataset, Split
from latkit.search.latency import LatencyTable
from latkit.search.losses import LOSSES, LossFn, get_loss
from latkit.search.mixed_op import MODES, frozen_bn_stats
from latkit.search.supernet import SuperNet


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search, apart from the space, the data and F.

    Architecture defaults are ProxylessNAS's (Adam lr 1e-3, betas (0, 0.999), every 5 weight
    steps, mul-log); the weight lr and batch size suit digits on a CPU (ImageNet used 0.025 at
    batch 256). `latkit search` passes its own arch lr and loss, see `latkit.cli.search`.
    """

    target_ms: float
    epochs: int = 12
    warmup_epochs: int = 3
    batch_size: int = 32
    mode: str = "two-path"
    strategy: str = "gradient"
    loss: str = "mul-log"
    loss_params: dict[str, float] = field(default_factory=dict)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    arch_lr: float = 1e-3
    arch_betas: tuple[float, float] = (0.0, 0.999)
    arch_every: int = 5
    rl_batch: int = 10
    rl_exponent: float = -0.1
    rl_baseline_weight: float = 0.99
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.target_ms > 0:
            raise LatkitError(f"--target-ms must be positive, got {self.target_ms}")
        for name in ("epochs", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise LatkitError(f"--{name.replace('_', '-')} must be >= 0")
        if self.batch_size < 2 or self.arch_every < 1 or self.rl_batch < 1:
            raise LatkitError("batch size must be >= 2, arch_every and rl_batch >= 1")
        STRATEGIES.check(self.strategy)
        LOSSES.check(self.loss)
        if self.mode not in MODES:
            raise LatkitError(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")


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


def accuracy(model: nn.Module, split: Split, batch_size: int = 256) -> float:
    """Top-1 accuracy in the model's current mode, without touching BN running statistics."""
    correct = 0
    with torch.no_grad(), frozen_bn_stats(model):
        for x, y in split.batches(batch_size):
            correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, len(split))


class SearchTrainer:
    """Warm-up epochs train weights only; search epochs interleave architecture steps."""

    def __init__(
        self,
        net: SuperNet,
        table: LatencyTable,
        data: Dataset,
        config: SearchConfig,
        strategy: ArchStrategy | None = None,
    ) -> None:
        self.net, self.table, self.data, self.config = net, table, data, config
        self.strategy = strategy or make_strategy(net, table, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = weight_optimizer(
            net.weight_parameters(), config.lr, config.momentum, config.weight_decay
        )
        self.history: list[EpochRecord] = []
        self.arch_seconds = 0.0

    def steps_per_epoch(self) -> int:
        return max(1, len(self.data.train) // self.config.batch_size)

    def total_steps(self) -> int:
        return (self.config.warmup_epochs + self.config.epochs) * self.steps_per_epoch()

    def _val_batches(self):
        while True:
            yield from self.data.val.batches(self.config.batch_size, self.generator, True)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.net.train()
        self.net.sample("weights", self.generator)
        loss = F.cross_entropy(self.net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def run(
        self,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> list[EpochRecord]:
        config = self.config
        val_batches = self._val_batches()
        per_epoch = self.steps_per_epoch()
        phases = [("warmup", config.warmup_epochs), ("search", config.epochs)]
        epoch = 0
        for phase, count in phases:
            total = count * per_epoch
            for phase_epoch in range(count):
                started = time.perf_counter()
                losses, arch_losses = [], []
                for i, (x, y) in enumerate(
                    self.data.train.batches(config.batch_size, self.generator, drop_last=True)
                ):
                    for group in self.optimizer.param_groups:
                        group["lr"] = cosine_lr(config.lr, phase_epoch * per_epoch + i, total)
                    losses.append(self.weight_step(x, y))
                    if phase == "search" and (i + 1) % config.arch_every == 0:
                        self.net.train()
                        xv, yv = next(val_batches)
                        arch_started = time.perf_counter()
                        arch_losses.append(self.strategy.step(xv, yv, self.generator))
                        self.arch_seconds += time.perf_counter() - arch_started
                    if on_step:
                        on_step()
                epoch += 1
                record = self._record(epoch, phase, losses, arch_losses, started)
                self.history.append(record)
                if on_epoch:
                    on_epoch(record)
        return self.history

    def _record(
        self, epoch: int, phase: str, losses: list[float], arch_losses: list[float], started
    ) -> EpochRecord:
        net = self.net
        net.train()
        net.sample("fixed")
        val_acc = accuracy(net, self.data.val)
        with torch.no_grad():
            expected = float(self.table.expected(net.arch_parameters()))
        extra = {"arch_loss": sum(arch_losses) / len(arch_losses)} if arch_losses else {}
        return EpochRecord(
            epoch=epoch,
            phase=phase,
            train_loss=sum(losses) / max(1, len(losses)),
            val_acc=val_acc,
            expected_ms=expected,
            entropy=net.entropy(),
            arch=net.arch(),
            arch_steps=len(arch_losses),
            seconds=time.perf_counter() - started,
            extra=extra,
        )


def train_network(
    model: nn.Module,
    data: Dataset,
    epochs: int,
    *,
    lr: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    on_step: Callable[[], None] | None = None,
) -> float:
    """Train a standalone network from scratch (SGD, cosine) and return its test accuracy."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = weight_optimizer(model.parameters(), lr)
    per_epoch = max(1, len(data.train) // batch_size)
    total = epochs * per_epoch
    for epoch in range(epochs):
        model.train()
        for i, (x, y) in enumerate(data.train.batches(batch_size, generator, drop_last=True)):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, epoch * per_epoch + i, total)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_step:
                on_step()
    model.eval()
    return accuracy(model, data.test)
