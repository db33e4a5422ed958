"""Model families for F(op), in a registry by name.

Every family has the same estimator API (`fit(ops, latencies_ms)`, `predict(ops)`) and saves to
plain JSON (`to_state` / `from_state`), trees included, so a saved predictor never needs pickle.

- `additive`: latency = a non-negative weighted sum of cost components (MACs, elements, bytes,
  calls), fitted for relative error. Linear in MACs, so it extrapolates to wider ops the way
  compute does; and linear in its weights, so it can be fitted from network sums.
- `loglinear`: ridge regression of log latency on log sizes: a power law in MACs, bytes and
  shapes. Smooth outside the range, but the fixed per-call costs of small ops pull its exponents
  below 1, so it underestimates ops much larger than those fitted (bench/predictor_accuracy.py).
- `gbdt`: gradient-boosted trees on log latency (nn-Meter's approach). Accurate inside the
  profiled range, flat outside it: trees cannot extrapolate.
- `hybrid`: the additive model times a tree-learned correction. The trees fix what the cost model
  misses inside the range; outside it the correction stays bounded and the cost model extrapolates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import lsq_linear

from latkit.errors import LatkitError
from latkit.ops import OP_TYPES, OpSpec
from latkit.predictors.features import (
    COMPONENTS,
    DESCRIPTORS,
    components,
    descriptors,
    log_descriptors,
)
from latkit.registry import Registry

#: predictions never go below this (ms): a cost model with all-zero weights for an op must not
#: claim it is free, and log targets need positive values
FLOOR_MS = 1e-4


class Model(ABC):
    """A fitted F(op) -> ms that saves to JSON."""

    name: ClassVar[str]

    @abstractmethod
    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray: ...

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """Everything `from_state` needs, as JSON-able data (with `family` = `name`)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Model: ...


class Family(Model):
    """A model family that is fitted on op rows: the candidates `auto` compares.

    `extrapolates` is false for a family that is flat outside its training range (trees): it
    never answers for ops outside the fitted range."""

    extrapolates: ClassVar[bool] = True

    @abstractmethod
    def fit(self, ops: Sequence[OpSpec], latencies_ms: Sequence[float]) -> Family: ...

    @classmethod
    def create(cls, seed: int = 0) -> Family:
        """A fresh unfitted model; families with randomness take the seed."""
        return cls()


#: families fitted on op rows, by name: what `auto` compares
MODELS: Registry[type[Family]] = Registry("model family")
#: every saved model kind, by name (families plus models fitted otherwise, e.g. from networks)
LOADERS: Registry[type[Model]] = Registry("saved model family")


def register(cls: type[Model]) -> type[Model]:
    """Class decorator: make a model loadable by name and, if it is a Family, selectable."""
    LOADERS.register(cls.name, cls)
    if issubclass(cls, Family):
        MODELS.register(cls.name, cls)
    return cls


def make_model(name: str, seed: int = 0) -> Family:
    return MODELS.get(name).create(seed)


def model_from_state(state: dict[str, Any]) -> Model:
    return LOADERS.get(state.get("family")).from_state(state)


def _targets(latencies_ms: Sequence[float]) -> np.ndarray:
    y = np.asarray(latencies_ms, dtype=float)
    if y.ndim != 1 or len(y) == 0 or not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise LatkitError("latencies to fit must be a non-empty list of positive numbers (ms)")
    return y


# --- relative-error least squares, shared with fitting from networks ----------------------------


def relative_lsq(
    x: np.ndarray,
    y: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    prior: np.ndarray | None = None,
    ridge: float = 1e-6,
    free: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """argmin_w sum(v * ((x w - y) / y)^2) + ridge * |s (w - prior)|^2 within bounds.

    Columns are scaled to unit relative norm first (s), so `ridge` means the same for MACs (~1e7)
    and call counts (~1); the relative weighting makes a 0.1 ms op count as much as a 10 ms one.
    Columns marked in `free` are not penalised (e.g. an intercept); v is `sample_weight` (1).
    """
    n = x.shape[1]
    root = np.ones(len(y)) if sample_weight is None else np.sqrt(sample_weight)
    a = x * (root / y)[:, None]
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    prior_scaled = np.zeros(n) if prior is None else prior * scale
    penalised = np.ones(n, dtype=bool) if free is None else ~free
    penalty = np.sqrt(ridge) * np.eye(n)[penalised]
    a = np.vstack([a, penalty])
    b = np.concatenate([root, np.sqrt(ridge) * prior_scaled[penalised]])
    result = lsq_linear(a, b, bounds=(lower * scale, upper * scale), method="bvls")
    return result.x / scale


@register
class AdditiveModel(Family):
    """latency = components(op) @ weights, weights >= 0."""

    name = "additive"

    def __init__(self, ridge: float = 1e-6) -> None:
        self.ridge = ridge

    def fit(self, ops: Sequence[OpSpec], latencies_ms: Sequence[float]) -> AdditiveModel:
        y = _targets(latencies_ms)
        n = len(COMPONENTS)
        self.weights_ = relative_lsq(
            components(ops), y, np.zeros(n), np.full(n, np.inf), ridge=self.ridge
        )
        return self

    @classmethod
    def from_weights(cls, weights: np.ndarray, ridge: float) -> AdditiveModel:
        """A model whose weights were fitted elsewhere (e.g. on network sums)."""
        model = cls(ridge)
        model.weights_ = np.asarray(weights, dtype=float)
        return model

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        return np.maximum(components(ops) @ self.weights_, FLOOR_MS)

    def to_state(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "ridge": self.ridge,
            "weights": dict(zip(COMPONENTS, map(float, self.weights_))),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AdditiveModel:
        weights = [state["weights"].get(c, 0.0) for c in COMPONENTS]
        return cls.from_weights(np.array(weights), state["ridge"])


@register
class LogLinearModel(Family):
    """log latency = ridge regression on log sizes; alpha picked by leave-one-out error."""

    name = "loglinear"
    ALPHAS: ClassVar[tuple[float, ...]] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)

    @staticmethod
    def design(ops: Sequence[OpSpec]) -> np.ndarray:
        return np.hstack([log_descriptors(ops), np.log1p(components(ops))])

    def fit(self, ops: Sequence[OpSpec], latencies_ms: Sequence[float]) -> LogLinearModel:
        t = np.log(_targets(latencies_ms))
        x = self.design(ops)
        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        z = (x - self.mean_) / self.scale_
        self.intercept_ = float(t.mean())
        r = t - self.intercept_
        best = None
        for alpha in self.ALPHAS:
            inv = np.linalg.inv(z.T @ z + alpha * np.eye(z.shape[1]))
            coef = inv @ z.T @ r
            hat = np.einsum("ij,jk,ik->i", z, inv, z)
            loo = (r - z @ coef) / np.maximum(1 - hat, 1e-6)
            score = float(np.mean(loo**2))
            if best is None or score < best[0]:
                best = (score, alpha, coef)
        _, self.alpha_, self.coef_ = best
        return self

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        z = (self.design(ops) - self.mean_) / self.scale_
        return np.maximum(np.exp(self.intercept_ + z @ self.coef_), FLOOR_MS)

    def to_state(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "alpha": self.alpha_,
            "intercept": self.intercept_,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LogLinearModel:
        model = cls()
        model.alpha_, model.intercept_ = state["alpha"], state["intercept"]
        model.mean_, model.scale_, model.coef_ = (
            np.array(state[k], dtype=float) for k in ("mean", "scale", "coef")
        )
        return model


# --- trees, stored as arrays in JSON ------------------------------------------------------------


@dataclass
class TreeEnsemble:
    """A fitted sklearn gradient-boosting regressor as plain arrays: base + rate * sum(trees).

    Evaluated in numpy for all trees and samples at once, which is both pickle-free and faster
    than sklearn's per-call validation for the ~100-op batches the search asks for.
    """

    base: float
    rate: float
    depth: int
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    @classmethod
    def from_sklearn(cls, model: Any) -> TreeEnsemble:
        trees = [est.tree_ for est in model.estimators_[:, 0]]
        width = max(t.node_count for t in trees)

        def pad(attr: str, fill: float, dtype: type) -> np.ndarray:
            out = np.full((len(trees), width), fill, dtype=dtype)
            for i, t in enumerate(trees):
                values = getattr(t, attr)
                values = values[:, 0, 0] if attr == "value" else values
                out[i, : t.node_count] = values
            return out

        return cls(
            base=float(np.ravel(model.init_.constant_)[0]),
            rate=float(model.learning_rate),
            depth=max(t.max_depth for t in trees),
            feature=pad("feature", 0, np.int64),
            threshold=pad("threshold", 0.0, np.float64),
            left=pad("children_left", -1, np.int64),
            right=pad("children_right", -1, np.int64),
            value=pad("value", 0.0, np.float64),
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        # sklearn compares float32 inputs with float64 thresholds; do the same for equal results
        x = x.astype(np.float32).astype(np.float64)
        trees = np.arange(len(self.feature))[:, None]
        samples = np.arange(len(x))[None, :]
        node = np.zeros((len(self.feature), len(x)), dtype=np.int64)
        for _ in range(self.depth):
            left = self.left[trees, node]
            leaf = left < 0
            feature = np.where(leaf, 0, self.feature[trees, node])
            go_left = x[samples, feature] <= self.threshold[trees, node]
            node = np.where(leaf, node, np.where(go_left, left, self.right[trees, node]))
        return self.base + self.rate * self.value[trees, node].sum(axis=0)

    def to_state(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "rate": self.rate,
            "depth": self.depth,
            **{
                k: getattr(self, k).tolist()
                for k in ("feature", "threshold", "left", "right", "value")
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TreeEnsemble:
        ints = {k: np.array(state[k], dtype=np.int64) for k in ("feature", "left", "right")}
        floats = {k: np.array(state[k], dtype=np.float64) for k in ("threshold", "value")}
        return cls(state["base"], state["rate"], state["depth"], **ints, **floats)


def boosted_trees(
    x: np.ndarray, t: np.ndarray, seed: int, n_estimators: int, depth: int, rate: float
) -> TreeEnsemble:
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(
        n_estimators=n_estimators,
        learning_rate=rate,
        max_depth=depth,
        min_samples_leaf=2,
        random_state=seed,
    )
    return TreeEnsemble.from_sklearn(model.fit(x, t))


@register
class GbdtModel(Family):
    """Gradient boosting on log latency from the op descriptors."""

    name = "gbdt"
    extrapolates = False

    def __init__(self, seed: int = 0, n_estimators: int = 300, depth: int = 3) -> None:
        self.seed, self.n_estimators, self.depth = seed, n_estimators, depth

    @classmethod
    def create(cls, seed: int = 0) -> GbdtModel:
        return cls(seed=seed)

    def fit(self, ops: Sequence[OpSpec], latencies_ms: Sequence[float]) -> GbdtModel:
        t = np.log(_targets(latencies_ms))
        self.trees_ = boosted_trees(
            descriptors(ops), t, self.seed, self.n_estimators, self.depth, 0.05
        )
        return self

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        return np.maximum(np.exp(self.trees_.predict(descriptors(ops))), FLOOR_MS)

    def to_state(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "seed": self.seed,
            "n_estimators": self.n_estimators,
            "depth": self.depth,
            "trees": self.trees_.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GbdtModel:
        model = cls(state["seed"], state["n_estimators"], state["depth"])
        model.trees_ = TreeEnsemble.from_state(state["trees"])
        return model


@register
class HybridModel(Family):
    """Additive cost model times exp(trees fitted on the log residual)."""

    name = "hybrid"
    #: the correction depends on the op's kind and resolution, not its width: channel counts
    #: outside the profiled range are left entirely to the cost model, which scales with them
    RESIDUAL_FEATURES: ClassVar[tuple[str, ...]] = (
        *(f"is_{t}" for t in OP_TYPES),
        "input_hw",
        "output_hw",
        "stride",
        "kernel",
        "expand",
        "groups",
        "se",
        "se_effnet",
        "hswish",
        "swish",
        "skip",
    )

    @classmethod
    def design(cls, ops: Sequence[OpSpec]) -> np.ndarray:
        return descriptors(ops)[:, [DESCRIPTORS.index(f) for f in cls.RESIDUAL_FEATURES]]

    def __init__(self, seed: int = 0, n_estimators: int = 150, depth: int = 2) -> None:
        self.seed, self.n_estimators, self.depth = seed, n_estimators, depth

    @classmethod
    def create(cls, seed: int = 0) -> HybridModel:
        return cls(seed=seed)

    def fit(self, ops: Sequence[OpSpec], latencies_ms: Sequence[float]) -> HybridModel:
        y = _targets(latencies_ms)
        self.base_ = AdditiveModel().fit(ops, y)
        residual = np.log(y) - np.log(self.base_.predict(ops))
        self.trees_ = boosted_trees(
            self.design(ops), residual, self.seed, self.n_estimators, self.depth, 0.05
        )
        return self

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        correction = np.exp(self.trees_.predict(self.design(ops)))
        return np.maximum(self.base_.predict(ops) * correction, FLOOR_MS)

    def to_state(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "seed": self.seed,
            "n_estimators": self.n_estimators,
            "depth": self.depth,
            "base": self.base_.to_state(),
            "trees": self.trees_.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HybridModel:
        model = cls(state["seed"], state["n_estimators"], state["depth"])
        model.base_ = AdditiveModel.from_state(state["base"])
        model.trees_ = TreeEnsemble.from_state(state["trees"])
        return model
