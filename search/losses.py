"""Architecture losses, in a registry by name: latkit's target tracker and ProxylessNAS's two.

Every loss takes the cross entropy, the expected latency E[LAT] (a tensor with a gradient to α)
and the target T in ms, and returns the tensor the architecture optimiser (Adam) minimises; none
ever detaches E[LAT] from α where its gradient is used.

- `lagrangian` (the command line's default) lands E[LAT] on T. Adam sees only the cross entropy;
  the latency part is an augmented-Lagrangian step of its own (`latency_step`), whose size
  depends on how far E[LAT] is from T and on a multiplier raised by dual ascent while E[LAT] > T
  and lowered while below.
- `add-linear` and `mul-log` are ProxylessNAS's losses as its code has them: trade-offs that push
  latency down (under Adam the latency part moves every logit by about ±lr per step, whatever λ
  and T are: T only sets the sign), not target trackers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from latkit.errors import LatkitError
from latkit.registry import Registry


class ExpectedLatency(Protocol):
    """What `latency_step` needs of the latency table: E[LAT] as a function of α."""

    def expected(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor: ...


class LossFn(Protocol):
    """A loss of the architecture step (see the module doc)."""

    def __call__(
        self, ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float
    ) -> torch.Tensor: ...

    def latency_step(
        self, alphas: Sequence[torch.Tensor], table: ExpectedLatency, target_ms: float
    ) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _AllThroughAdam:
    """ProxylessNAS's losses: the whole gradient goes through Adam, and nothing is remembered."""

    def latency_step(
        self, alphas: Sequence[torch.Tensor], table: ExpectedLatency, target_ms: float
    ) -> None:
        """Nothing: the latency gradient already went through Adam with the cross entropy."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Stateless: accepts the empty state it saves, and refuses any other."""
        if state:
            raise LatkitError(f"{type(self).__name__} keeps no state, got {sorted(state)}")


@dataclass(frozen=True)
class MulLog(_AllThroughAdam):
    """`mul#log`: CE · α_r · (log LAT / log T)^β, defaults α_r 0.2, β 0.3.

    ProxylessNAS has latency in ms and T = 80 ms for its phone. The ratio of logs depends on the
    unit, and below 1 ms log T changes sign (a small network on a desktop CPU runs well under it). So
    latency is expressed in units of T / `reference`: at the paper's T = 80 ms (reference 80) this
    is its formula in ms, and at any other target the latency term pulls as hard as it did there
    (its elasticity at LAT = T is β / ln(reference)). Below T / `reference` the log is negative
    and its power undefined; the ratio is held at a tiny positive floor there, where a network
    that fast has no latency left to give up.
    """

    alpha: float = 0.2
    beta: float = 0.3
    reference: float = 80.0

    def __call__(
        self, ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float
    ) -> torch.Tensor:
        _check_target(target_ms)
        unit = target_ms / self.reference
        ratio = torch.log(expected_ms / unit) / math.log(target_ms / unit)
        return self.alpha * ce * ratio.clamp(min=1e-6) ** self.beta


@dataclass(frozen=True)
class AddLinear(_AllThroughAdam):
    """`add#linear`: CE + λ (LAT − T) / T, default λ 0.1."""

    lam: float = 0.1

    def __call__(
        self, ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float
    ) -> torch.Tensor:
        _check_target(target_ms)
        return ce + self.lam * (expected_ms - target_ms) / target_ms


class Lagrangian:
    """CE + μ·e + (ρ/2)·e², e = E[LAT] / (aim·T) − 1: E[LAT] is driven to aim·T and held there.

    Adam minimises the cross entropy alone (the value returned also shows the latency part, as a
    constant). The latency part takes its own step after Adam's, along its gradient
    (μ + ρe)·∇e with step size 1/‖∇e‖² (Gauss-Newton), so each step removes the share ρ of the
    relative error plus μ, whatever the scale of F and T: its size follows the distance to the
    target, not Adam's per-coordinate normalisation. μ integrates the error by dual ascent
    (μ += (ρ²/4)·e, raised while E[LAT] is above the aim and lowered while below), which balances
    the cross entropy's steady pull toward larger networks; with that dual step the error decays
    critically damped. μ moves only once |e| ≤ ρ, so the approach from far away does not wind it
    up: E[LAT] settles on the aim instead of passing through it. A step moves α by at most
    `max_step` (L2 over all logits), for when the distributions are nearly one-hot and ∇e
    vanishes.

    Parameters:
        rate: ρ, the share of the relative latency error removed per architecture step.
        aim: the fraction of T that E[LAT] is driven to (below 1 to leave room under a hard T).
        max_step: the largest L2 norm of one latency step on α.
    """

    def __init__(self, rate: float = 0.1, aim: float = 1.0, max_step: float = 1.0) -> None:
        if not 0 < rate <= 1:
            raise LatkitError(f"--loss lagrangian: rate must be in (0, 1], got {rate}")
        if not aim > 0 or not max_step > 0:
            raise LatkitError("--loss lagrangian: aim and max_step must be positive")
        self.rate, self.aim, self.max_step = float(rate), float(aim), float(max_step)
        self.multiplier = 0.0

    def error(self, expected_ms: torch.Tensor, target_ms: float) -> torch.Tensor:
        """e = E[LAT] / (aim·T) − 1, the relative distance to the aim (a tensor, like E[LAT])."""
        _check_target(target_ms)
        return expected_ms / (self.aim * target_ms) - 1

    def __call__(
        self, ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float
    ) -> torch.Tensor:
        e = float(self.error(expected_ms.detach(), target_ms))
        return ce + (self.multiplier * e + 0.5 * self.rate * e * e)

    @torch.no_grad()
    def latency_step(
        self, alphas: Sequence[torch.Tensor], table: ExpectedLatency, target_ms: float
    ) -> None:
        """Dual ascent on μ, then α -= (μ + ρe)·∇e / ‖∇e‖² (at most `max_step` long)."""
        with torch.enable_grad():
            e = self.error(table.expected(alphas), target_ms)
            grads = torch.autograd.grad(e, list(alphas))
        error = float(e)
        if abs(error) <= self.rate:
            self.multiplier += self.rate**2 / 4 * error
        force = self.multiplier + self.rate * error
        norm2 = sum(float((g * g).sum()) for g in grads)
        if norm2 == 0.0 or force == 0.0:
            return
        scale = force / norm2
        length = abs(scale) * math.sqrt(norm2)
        if length > self.max_step:
            scale *= self.max_step / length
        for alpha, grad in zip(alphas, grads):
            alpha.sub_(scale * grad)

    def state_dict(self) -> dict[str, Any]:
        return {"multiplier": self.multiplier}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.multiplier = float(state["multiplier"])

    def __repr__(self) -> str:
        return f"Lagrangian(rate={self.rate}, aim={self.aim}, multiplier={self.multiplier:.4g})"


def _check_target(target_ms: float) -> None:
    if not target_ms > 0:
        raise LatkitError(f"the latency target must be positive, got {target_ms} ms")


LOSSES: Registry[Callable[..., LossFn]] = Registry("--loss")
LOSSES.register("lagrangian", Lagrangian)
LOSSES.register("mul-log", MulLog)
LOSSES.register("add-linear", AddLinear)


def get_loss(name: str, **params: float) -> LossFn:
    """The loss registered as `name`, with its defaults updated by `params`."""
    factory = LOSSES.get(name)
    try:
        return factory(**params)
    except TypeError as exc:
        raise LatkitError(f"--loss {name}: {exc}") from exc
