"""The two latency-aware losses of ProxylessNAS's code, in a registry by name.

Both take the cross entropy, the expected latency E[LAT] (a tensor with a gradient to α) and the
target T in ms, and return a tensor; neither ever detaches E[LAT]. Every loss has `state_dict()`
and `load_state_dict(state)`, so a search checkpoint holds whatever state a loss keeps (these two
keep none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from latkit.errors import LatkitError
from latkit.registry import Registry


class Stateless:
    """A loss without state: an empty `state_dict`, and nothing to load."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise LatkitError(f"{type(self).__name__} keeps no state, got {sorted(state)}")


@dataclass(frozen=True)
class MulLog(Stateless):
    """`mul#log`: CE · α_r · (log LAT / log T)^β, defaults α_r 0.2, β 0.3.

    ProxylessNAS has latency in ms and T = 80 ms for its phone. The ratio of logs depends on the
    unit, and below 1 ms log T changes sign (a small network on a desktop CPU runs well under it). So
    latency is expressed in units of T / `reference`: at the paper's T = 80 ms (reference 80) this
    is its formula in ms, and at any other target the latency term pulls as hard as it did there
    (its elasticity at LAT = T is β / ln(reference)).
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
        return self.alpha * ce * ratio**self.beta


@dataclass(frozen=True)
class AddLinear(Stateless):
    """`add#linear`: CE + λ (LAT − T) / T, default λ 0.1."""

    lam: float = 0.1

    def __call__(
        self, ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float
    ) -> torch.Tensor:
        _check_target(target_ms)
        return ce + self.lam * (expected_ms - target_ms) / target_ms


def _check_target(target_ms: float) -> None:
    if not target_ms > 0:
        raise LatkitError(f"the latency target must be positive, got {target_ms} ms")


LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

LOSSES: Registry[Callable[..., LossFn]] = Registry("--loss")
LOSSES.register("mul-log", MulLog)
LOSSES.register("add-linear", AddLinear)


def get_loss(name: str, **params: float) -> LossFn:
    """The loss registered as `name`, with its defaults updated by `params`."""
    factory = LOSSES.get(name)
    try:
        return factory(**params)
    except TypeError as exc:
        raise LatkitError(f"--loss {name}: {exc}") from exc
