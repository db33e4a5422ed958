"""What a whole network costs beyond the sum of its ops, and an honest interval around it.

An op timed alone pays the runtime's per-call cost every call and finds its weights and input
in cache; inside a network it pays the call once per network and finds them evicted by the ops
before it. So a network is not the sum of its ops, and the gap depends on the network: on this
CPU, `proxyless-tiny` networks of microsecond ops run at 0.7-0.9x their op sum, ImageNet-sized
`proxyless-mobile` ones at 0.8-1.15x depending on load, wider ones higher still. One per-network
overhead cannot follow both. The network model is linear in per-op terms:

    network ms = sum over non-zero ops of (scale * F(op) - per_op_ms + per_mb_ms * MB(op))
                 + overhead_ms

where MB(op) is the activation and weight megabytes the op moves. Being a sum over ops, a
search can still differentiate it through its architecture probabilities. Its features (op sum,
op count, bytes) carry what differs between spaces, so one fit serves tiny and ImageNet-sized
networks of one device alike.

The interval is CV+ (Barber et al., "Predictive inference with the jackknife+", 2021): each
calibration network is predicted by the terms fitted without its fold, and a new network's
interval is built from every fold's prediction of it shifted by that fold's held-out residuals.
The ridge is chosen inside each fold, so no residual was used to fit or to choose the model
that produced it. Fold predictions spread apart away from the calibrated networks, so the
interval widens there by itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latkit.ops import OpSpec
from latkit.predictors.features import COMPONENTS, components
from latkit.predictors.models import relative_lsq

#: the network features, in the order of a fitted coefficient row
FEATURES: tuple[str, ...] = ("op_sum_ms", "calls", "mbytes", "one")
#: the terms' names, one per feature (per_op_ms is subtracted per call)
TERMS: tuple[str, ...] = ("scale", "per_op_ms", "per_mb_ms", "overhead_ms")
#: ridge strengths tried (one-standard-error rule), pulling towards the op sum alone
RIDGES: tuple[float, ...] = (1e-6, 1e-4, 1e-2, 1.0)
#: Huber's constant (95% efficiency on clean data) and the reweighting steps
HUBER_K = 1.345
ROBUST_STEPS = 8
#: folds of the CV+ interval (leave-one-out up to this many networks)
FOLDS = 10
#: fewer networks than this: the strongest ridge, no cross-validated choice
MIN_TO_CHOOSE = 10
#: the width (in log ratio) of the weight a search's target gives nearby networks, and the
#: weight every network keeps however far
NEAR_WIDTH = 0.1
FAR_WEIGHT = 0.02

_IO, _WEIGHTS = COMPONENTS.index("io_bytes"), COMPONENTS.index("weight_bytes")


def op_features(ops: Sequence[OpSpec], op_ms: np.ndarray) -> np.ndarray:
    """(n, 4) per-op features: [F(op), 1, MB moved, 0] for non-zero ops, zeros for zero ops;
    a network's feature row is their sum plus the intercept."""
    c = components(ops)
    timed = np.array([op.type != "zero" for op in ops], dtype=float)
    mbytes = (c[:, _IO] + c[:, _WEIGHTS]) / 1e6
    return np.column_stack([op_ms * timed, timed, mbytes * timed, np.zeros(len(ops))])


def network_row(ops: Sequence[OpSpec], op_ms: np.ndarray) -> np.ndarray:
    row = op_features(ops, op_ms).sum(axis=0)
    row[-1] = 1.0
    return row


@dataclass(frozen=True)
class NetworkTerms:
    """Coefficients on `FEATURES`: scale, minus the per-call cost, cost per MB, overhead."""

    scale: float = 1.0
    per_op_ms: float = 0.0
    per_mb_ms: float = 0.0
    overhead_ms: float = 0.0

    @property
    def coef(self) -> np.ndarray:
        return np.array([self.scale, -self.per_op_ms, self.per_mb_ms, self.overhead_ms])

    @classmethod
    def from_coef(cls, w: Sequence[float]) -> NetworkTerms:
        return cls(float(w[0]), float(-w[1]), float(w[2]), float(w[3]))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=float) @ self.coef


#: scale >= 0, per-call cost >= 0 (its coefficient <= 0), cost per MB >= 0, overhead free
LOWER = np.array([0.0, -np.inf, 0.0, -np.inf])
UPPER = np.array([np.inf, 0.0, np.inf, np.inf])


def level(x: np.ndarray, y: np.ndarray, w: np.ndarray, weight: np.ndarray | None = None) -> float:
    """The overhead that puts the (weighted) median network on its measurement, the others'
    terms kept: a burst of load on a few networks cannot move it."""
    gaps = y - x[:, :-1] @ w[:-1]
    order = np.argsort(gaps)
    cumulative = np.cumsum((np.ones(len(y)) if weight is None else weight)[order])
    return float(gaps[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def huber_lsq(
    x: np.ndarray,
    y: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    prior: np.ndarray,
    ridge: float,
    free: np.ndarray,
) -> np.ndarray:
    """`relative_lsq` iteratively reweighted with Huber's weights: a network timed during a
    burst of background load gets a bounded say instead of dragging every coefficient."""
    robust = np.ones(len(y))
    w = prior
    for _ in range(ROBUST_STEPS):
        w = relative_lsq(x, y, *bounds, prior, ridge, free, sample_weight=robust)
        residual = (x @ w - y) / y
        spread = 1.4826 * np.median(np.abs(residual - np.median(residual)))
        if spread == 0:
            break
        robust = np.minimum(1.0, HUBER_K * spread / np.maximum(np.abs(residual), 1e-12))
    return w


def solve(x: np.ndarray, y: np.ndarray, ridge: float, cap_per_op: float = np.inf) -> np.ndarray:
    """Huber-weighted relative least squares, iteratively reweighted: a network timed during
    a burst of background load gets a bounded say. The ridge pulls towards the op sum alone
    (scale 1, no per-call or per-MB term); the overhead is an intercept and is never pulled.
    The per-call cost stays at most scale * `cap_per_op` (the cheapest op's F), so no op's
    contribution to a network is negative; where that binds, the overhead is re-levelled."""
    prior = np.array([1.0, 0.0, 0.0, 0.0])
    free = np.array([False, False, False, True])
    w = huber_lsq(x, y, (LOWER, UPPER), prior, ridge, free)
    if -w[1] > w[0] * cap_per_op:
        w[1] = -w[0] * cap_per_op
        w[3] = level(x, y, w)
    return w


def pick_ridge(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    fit: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
) -> float:
    """The strongest ridge whose 5-fold error is within one standard error of the best (with
    few networks, stay near the prior unless the data clearly say otherwise). Errors are
    relative and clipped at 3 robust deviations, so networks timed under background load
    cannot decide it. `fit(x, y, ridge)` returns coefficients on `x`'s columns."""
    if len(y) < MIN_TO_CHOOSE:
        return RIDGES[-1]
    folds = np.array_split(np.random.default_rng(seed).permutation(len(y)), 5)
    errors = []
    for ridge in RIDGES:
        guess = np.zeros(len(y))
        for test in folds:
            train = np.setdiff1d(np.arange(len(y)), test)
            guess[test] = x[test] @ fit(x[train], y[train], ridge)
        errors.append(np.abs(np.maximum(guess, 1e-9) - y) / y)
    pooled = np.concatenate(errors)
    clip = np.median(pooled) + 3 * 1.4826 * np.median(np.abs(pooled - np.median(pooled)))
    clipped = [np.minimum(e, clip) for e in errors]
    means = np.array([e.mean() for e in clipped])
    best = int(np.argmin(means))
    limit = means[best] + clipped[best].std(ddof=1) / np.sqrt(len(y))
    return max(r for r, m in zip(RIDGES, means) if m <= limit)


def fit_terms(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    cap_per_op: float = np.inf,
    near_ms: float | None = None,
) -> tuple[NetworkTerms, float]:
    """(terms, ridge) fitted on network rows `x` and measured ms `y`. With `near_ms`, the
    overhead is then the level of the networks predicted near it (`near_weights`)."""

    def fit(xs: np.ndarray, ys: np.ndarray, ridge: float) -> np.ndarray:
        return solve(xs, ys, ridge, cap_per_op)

    ridge = pick_ridge(x, y, seed, fit)
    w = solve(x, y, ridge, cap_per_op)
    if near_ms is not None:
        w[3] = level(x, y, w, near_weights(x @ w, near_ms))
    return NetworkTerms.from_coef(w), ridge


def near_weights(predicted: np.ndarray, near_ms: float) -> np.ndarray:
    """Weights that favour networks predicted near `near_ms` (a search asks F about networks
    at its target, and there the local level is what counts); far ones keep a little say."""
    distance = np.log(np.maximum(predicted, 1e-9) / near_ms)
    return FAR_WEIGHT + np.exp(-0.5 * (distance / NEAR_WIDTH) ** 2)


@dataclass(frozen=True)
class CVPlusInterval:
    """A CV+ interval for whole networks: each fold's terms and the held-out |log| residuals
    of the calibration networks, with the fold each was held out in."""

    folds: tuple[NetworkTerms, ...]
    fold_of: tuple[int, ...]
    residuals: tuple[float, ...]
    level: float

    @property
    def n(self) -> int:
        return len(self.residuals)

    @property
    def finite(self) -> bool:
        return math.ceil((self.n + 1) * self.level) <= self.n

    def bounds(self, row: np.ndarray) -> tuple[float, float]:
        """(low, high) in ms for a network with feature row `row`: the ceil((1-a)(n+1))-th
        smallest of log mu_-k(i)(x) + R_i, and the matching lower quantile."""
        if not self.finite:
            return 0.0, math.inf
        mu = np.array([max(float(t.predict(row)), 1e-9) for t in self.folds])
        centre = np.log(mu[list(self.fold_of)])
        r = np.asarray(self.residuals)
        k = math.ceil((self.n + 1) * self.level)
        high = np.sort(centre + r)[k - 1]
        low = np.sort(centre - r)[self.n - k]
        return float(np.exp(low)), float(np.exp(high))

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "cv+",
            "folds": [t.coef.tolist() for t in self.folds],
            "fold_of": list(self.fold_of),
            "residuals": list(self.residuals),
            "level": self.level,
            "source": "networks",
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CVPlusInterval:
        return cls(
            tuple(NetworkTerms.from_coef(w) for w in state["folds"]),
            tuple(int(k) for k in state["fold_of"]),
            tuple(float(r) for r in state["residuals"]),
            float(state["level"]),
        )


def cv_plus(
    x: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    seed: int = 0,
    cap_per_op: float = np.inf,
    folds: int = FOLDS,
) -> tuple[CVPlusInterval, np.ndarray]:
    """Fit the terms (ridge chosen within the fold) on all folds but one, predict that one:
    every network's residual comes from terms that never saw it. Returns the interval and
    each network's held-out prediction. Below 3 networks there is nothing to hold out, and
    the interval is unbounded."""
    n = len(y)
    guesses = np.zeros(n)
    if n < 3:
        return CVPlusInterval((), (), (), level), guesses[:0]
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.zeros(n, dtype=int)
    terms, residuals = [], np.zeros(n)
    for k, part in enumerate(np.array_split(order, min(folds, n))):
        train = np.setdiff1d(np.arange(n), part)
        fitted, _ = fit_terms(x[train], y[train], seed=seed, cap_per_op=cap_per_op)
        terms.append(fitted)
        fold_of[part] = k
        guesses[part] = np.maximum(fitted.predict(x[part]), 1e-9)
        residuals[part] = np.abs(np.log(y[part] / guesses[part]))
    interval = CVPlusInterval(tuple(terms), tuple(fold_of.tolist()), tuple(residuals), level)
    return interval, guesses


def group_key(ops: Sequence[OpSpec]) -> str:
    """What tells one space's networks from another's on one device: the input (size and
    channels) and the classifier's shape. A search space's networks all share it."""
    first, last = ops[0], ops[-1]
    return f"{first.input_hw}x{first.cin}:{last.cin}>{last.cout}"


@dataclass(frozen=True)
class NetworkGroup:
    """The network terms of one group of networks (one space) and their CV+ interval, with the
    median op sum of the networks they were fitted on (to find the nearest group for a network
    of no group)."""

    key: str
    terms: NetworkTerms
    interval: CVPlusInterval
    op_sum_ms: float
    held_out: dict[str, float]

    def distance(self, ops: Sequence[OpSpec], op_sum_ms: float) -> tuple[bool, float]:
        """Order of preference for a network of another group: the same input size first,
        then the nearest op sum (on a log scale)."""
        same_input = self.key.split(":")[0] == group_key(ops).split(":")[0]
        return (not same_input, abs(math.log(max(op_sum_ms, 1e-9) / self.op_sum_ms)))

    def to_state(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "terms": self.terms.coef.tolist(),
            "interval": self.interval.to_state(),
            "op_sum_ms": self.op_sum_ms,
            "held_out": self.held_out,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NetworkGroup:
        return cls(
            str(state["key"]),
            NetworkTerms.from_coef(state["terms"]),
            CVPlusInterval.from_state(state["interval"]),
            float(state["op_sum_ms"]),
            dict(state["held_out"]),
        )
