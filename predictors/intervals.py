"""Prediction intervals: split-conformal on the log scale, from residuals F never trained on.

A residual is |log(measured / predicted)|, so an interval is a factor around the prediction,
[p / e^q, p * e^q]: latencies span three orders of magnitude and errors are relative. q is the
conformal quantile of held-out residuals (the ceil((n + 1) * level)-th smallest of n), which
covers a new, exchangeable case with probability at least `level`. With fewer residuals than
that needs (n < 9 at 90%) no finite q is honest, and the interval is unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latkit.ops import OpSpec

#: the nominal coverage of every interval latkit reports
LEVEL = 0.9

NetworkSample = tuple[Sequence[OpSpec], float]


def log_residuals(pred: Sequence[float], true: Sequence[float]) -> np.ndarray:
    """|log(true / pred)| of each case."""
    p, t = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    return np.abs(np.log(t / np.maximum(p, 1e-12)))


def conformal_halfwidth(residuals: Sequence[float], level: float = LEVEL) -> float:
    """The split-conformal quantile of `residuals`; inf when there are too few of them."""
    r = np.sort(np.asarray(residuals, dtype=float))
    k = math.ceil((len(r) + 1) * level)
    return float(r[k - 1]) if 0 < k <= len(r) else math.inf


@dataclass(frozen=True)
class Interval:
    """A `level` interval of relative half-width e^halfwidth, calibrated on `n` residuals of
    `source` (held-out ops, or networks)."""

    halfwidth: float
    n: int
    source: str
    level: float = LEVEL

    @classmethod
    def calibrate(cls, residuals: Sequence[float], source: str, level: float = LEVEL) -> Interval:
        return cls(conformal_halfwidth(residuals, level), len(residuals), source, level)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.halfwidth)

    def bounds(self, pred: Any) -> tuple[Any, Any]:
        """(low, high) around `pred` (a number or an array); unbounded: (0, inf), even
        around a prediction of 0."""
        pred = np.asarray(pred, dtype=float)
        if not self.finite:
            return np.zeros_like(pred), np.full_like(pred, np.inf)
        factor = math.exp(self.halfwidth)
        return pred / factor, pred * factor

    def to_state(self) -> dict[str, Any]:
        return {
            "halfwidth": self.halfwidth if self.finite else None,
            "n": self.n,
            "source": self.source,
            "level": self.level,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Interval:
        width = state["halfwidth"]
        return cls(
            math.inf if width is None else float(width),
            int(state["n"]),
            state["source"],
            float(state["level"]),
        )


def cross_validated_residuals(
    samples: Sequence[NetworkSample],
    fit: Callable[[list[NetworkSample]], Any],
    seed: int = 0,
    folds: int = 10,
) -> np.ndarray:
    """Residuals of whole networks, each predicted by `fit` on the other folds (leave-one-out up
    to `folds` networks): what a network F never saw looks like to F."""
    samples = list(samples)
    n = len(samples)
    if n < 3:
        return np.zeros(0)
    order = np.random.default_rng(seed).permutation(n)
    out = np.zeros(n)
    for part in np.array_split(order, min(folds, n)):
        held = set(part.tolist())
        model = fit([s for i, s in enumerate(samples) if i not in held])
        pred = [model.predict_network(samples[i][0]) for i in part]
        out[part] = log_residuals(pred, [samples[i][1] for i in part])
    return out
