"""Fit F from whole-network timings: network = sum of F(op) + overhead, by least squares.

Where op-in-isolation timing misleads (GPU launch overlap, caches warm in isolation but cold in a
network), the per-op model is fitted on network sums instead. F stays a per-op model: the
additive cost model's features sum over a network, so the fit is linear and F answers for op
combinations never timed together. With a `base` predictor, F(op) = scale * base(op) + cost
correction(op): the base is prior knowledge, either this device's op-table fit (calibration) or
an already fitted predictor of another device (few-shot transfer, as in HELP or BRP-NAS: a
device's ranking of architectures mostly carries over, its scale does not). The scale and the
overhead are free; the ridge pulls the corrections towards 0, so with 10-20 networks F is
mostly the rescaled prior.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latkit import metrics
from latkit.errors import LatkitError
from latkit.files import read_text
from latkit.ops import OpSpec, from_key
from latkit.predictors.features import COMPONENTS, components
from latkit.predictors.fit import ENV_META, split_indices
from latkit.predictors.intervals import cross_validated_residuals
from latkit.predictors.models import AdditiveModel, Model, register
from latkit.predictors.network_terms import huber_lsq, pick_ridge
from latkit.predictors.predictor import LatencyPredictor

NetworkSample = tuple[Sequence[OpSpec], float]


@register
class CalibratedModel(Model):
    """scale * base(op) + components(op) @ weights: a prior predictor corrected by networks.

    An answer is the op's share of a fit on network sums, not an isolated timing: the sum over
    a network is what was fitted, so it is not floored per op (flooring would break that sum),
    and an op the prior overrates can get a share below 0.
    """

    name = "calibrated"

    def __init__(self, base: LatencyPredictor, scale: float, weights: np.ndarray) -> None:
        self.base, self.scale, self.weights = base, scale, weights

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        return self.scale * self.base.predict(ops) + components(ops) @ self.weights

    def to_state(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "scale": self.scale,
            "weights": dict(zip(COMPONENTS, map(float, self.weights))),
            "base": self.base.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CalibratedModel:
        base = LatencyPredictor.from_state(state["base"], "calibrated base")
        weights = np.array([state["weights"].get(c, 0.0) for c in COMPONENTS])
        return cls(base, float(state["scale"]), weights)


#: the latencies a timing may have, in ms: a nanosecond to about three hours
MIN_MS, MAX_MS = 1e-6, 1e7
#: the longest network name a line may give
MAX_NAME = 200


@dataclass(frozen=True)
class NetworkLine:
    """One line of a NETS.jsonl file: a network's ops, its measured latency if given, a name."""

    name: str
    ops: tuple[OpSpec, ...]
    latency_ms: float | None
    line: int


def read_network_lines(
    path: str | Path, batch: int = 1, need_latency: bool = True
) -> list[NetworkLine]:
    """Read NETS.jsonl: one `{"ops": [op spec dicts or table keys], "latency_ms": x}` per line
    (`latency_ms` optional unless `need_latency`; an optional `name`, else `<file>:<line>`).

    The file comes from outside, so whatever is wrong in it stops the read as one error naming
    the file and the line, never as a traceback or a value quietly taken for another."""
    path = Path(path)
    out = []
    for number, line in enumerate(read_text(path, "network timings").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = _json_object(line)
            name = _name(record, f"{path.name}:{number}")
            ops = _ops(record, batch)
            out.append(NetworkLine(name, ops, _latency(record, need_latency), number))
        except LatkitError as exc:
            raise LatkitError(f"{path}:{number}: {exc}") from None
    if not out:
        raise LatkitError(f"{path}: no networks in the file")
    return out


def _json_object(line: str) -> dict[str, Any]:
    """One line as a JSON object; json.loads fails in more ways than JSONDecodeError."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LatkitError(f"not JSON ({exc.msg})") from None
    except ValueError:  # an integer literal past Python's int-to-str digit limit
        raise LatkitError("not JSON (a number with too many digits)") from None
    except RecursionError:
        raise LatkitError("not JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        raise LatkitError("not a JSON object")
    return record


def _name(record: dict[str, Any], default: str) -> str:
    """`name`, or `default` when missing or null (str(None) would name the network "None")."""
    name = record.get("name")
    if name is None:
        return default
    if not isinstance(name, str):
        raise LatkitError("`name` must be a string")
    if not name.isprintable() or len(name) > MAX_NAME:
        # JSON escapes allow lone surrogates (no store can hold them) and control characters
        raise LatkitError(f"`name` must be printable text of at most {MAX_NAME} characters")
    return name


def _ops(record: dict[str, Any], batch: int) -> tuple[OpSpec, ...]:
    """`ops` as specs; a string or a dict would otherwise be iterated as if it were the list."""
    if "ops" not in record:
        raise LatkitError("missing field 'ops'")
    ops = record["ops"]
    if not isinstance(ops, list) or not ops:
        raise LatkitError("needs a non-empty `ops` list")
    try:
        return tuple(_op(op, batch) for op in ops)
    except (TypeError, ValueError, OverflowError) as exc:  # a field value OpSpec cannot take
        raise LatkitError(f"`ops`: {exc}") from None


def _op(op: Any, batch: int) -> OpSpec:
    """A table key or a spec dict; anything else would fail deep in OpSpec with no field named."""
    if isinstance(op, str):
        return from_key(op, batch=batch)
    if isinstance(op, dict):
        spec = OpSpec.from_dict({"batch": batch, **op})
        if spec.batch != batch:  # its timing is of another batch than the device's
            raise LatkitError(f"an op of batch {spec.batch} where the device runs batch {batch}")
        return spec
    raise LatkitError("each of `ops` must be an op spec dict or a table key")


def _latency(record: dict[str, Any], need: bool) -> float | None:
    """`latency_ms` (null counts as missing): a number of ms in [`MIN_MS`, `MAX_MS`]. JSON's
    true is not 1 ms; the bounds are checked before float(), which overflows on a long integer
    literal; and a timing of 1e-300 ms is no timing (its fit fails to converge)."""
    value = record.get("latency_ms")
    if value is None:
        if need:
            raise LatkitError("missing field 'latency_ms'")
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not MIN_MS <= value <= MAX_MS:
        raise LatkitError(
            f"needs a non-empty `ops` and latency_ms > 0 (a number of ms from {MIN_MS:g} to "
            f"{MAX_MS:g})"
        )
    return float(value)


def load_network_samples(
    path: str | Path, batch: int = 1
) -> list[tuple[tuple[OpSpec, ...], float]]:
    """Read NETS.jsonl as (ops, measured ms) pairs: every line needs `latency_ms`."""
    return [(line.ops, line.latency_ms) for line in read_network_lines(path, batch)]


class _Design:
    """Network-level design matrix: [sum of base(op)] + sum of components(op) + overhead."""

    def __init__(self, base: LatencyPredictor | None) -> None:
        self.base = base

    def rows(self, samples: Sequence[NetworkSample]) -> np.ndarray:
        out = []
        for ops, _ in samples:
            parts = [components(ops).sum(axis=0), [1.0]]
            if self.base is not None:
                parts.insert(0, [float(self.base.predict(ops).sum())])
            out.append(np.concatenate(parts))
        return np.array(out)

    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, prior): cost weights >= 0 alone, free around a base; overhead free."""
        n = len(COMPONENTS)
        if self.base is None:
            lower = np.concatenate([np.zeros(n), [-np.inf]])
            return lower, np.full(n + 1, np.inf), np.zeros(n + 1)
        lower = np.concatenate([[0.0], np.full(n + 1, -np.inf)])
        prior = np.concatenate([[1.0], np.zeros(n + 1)])
        return lower, np.full(n + 2, np.inf), prior

    def solve(self, x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
        """Huber-weighted least squares (iteratively reweighted): a network timed during a
        burst of background load gets a bounded say instead of dragging every weight."""
        lower, upper, prior = self.bounds()
        free = np.zeros(len(prior), dtype=bool)
        free[-1] = True  # the overhead is an intercept: never pulled towards 0
        free[0] = self.base is not None  # nor the scale of the prior (devices differ in speed)
        return huber_lsq(x, y, (lower, upper), prior, ridge, free)


def _fit(
    samples: Sequence[NetworkSample], base: LatencyPredictor | None, seed: int
) -> LatencyPredictor:
    design = _Design(base)
    x = design.rows(samples)
    y = np.array([latency for _, latency in samples], dtype=float)
    ridge = pick_ridge(x, y, seed, design.solve)
    w = design.solve(x, y, ridge)
    if base is None:
        model: Model = AdditiveModel.from_weights(w[:-1], ridge)
    else:
        model = CalibratedModel(base, float(w[0]), w[1:-1])
    fitted_on = [op for ops, _ in samples for op in ops]
    predictor = LatencyPredictor(family=model.name, seed=seed).with_model(
        model, fitted_on=fitted_on
    )
    predictor.overhead_ms = float(w[-1])
    predictor.meta["ridge"] = ridge
    return predictor


def _fit_calibrated(
    samples: Sequence[NetworkSample], base: LatencyPredictor | None, seed: int
) -> LatencyPredictor:
    """`_fit`, with the network interval calibrated on cross-validated residuals."""
    predictor = _fit(samples, base, seed)
    residuals = cross_validated_residuals(samples, lambda train: _fit(train, base, seed), seed)
    predictor.calibrate_networks(residuals)
    return predictor


def fit_networks(
    samples: Sequence[NetworkSample],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    base: LatencyPredictor | None = None,
    n_train: int | None = None,
    device: str | None = None,
) -> tuple[LatencyPredictor, dict[str, float]]:
    """Fit F from (ops, measured ms) of whole networks; return it with held-out metrics.

    The held-out networks are `test_fraction` of them, or, with `n_train`, all but `n_train`
    picked at random (few-shot: fit on 10 networks, score on hundreds). The metrics, interval
    coverage included, are of a fit on the training networks predicting the held-out ones; the
    returned predictor is refit on all networks. Its table is empty: no op was timed in
    isolation. `base` is prior knowledge (see the module doc); when it is a predictor of this
    `device` (default: the base's), its provenance is copied, else it is recorded as the prior.
    """
    samples = [(tuple(ops), float(latency)) for ops, latency in samples]
    if len(samples) < 2:
        raise LatkitError(
            f"fitting from networks needs at least 2 timed networks, got {len(samples)}"
        )
    if n_train is None:
        train, test = split_indices(len(samples), test_fraction, seed)
    else:
        train, test = train_indices(len(samples), n_train, seed)
    held: dict[str, float] = {}
    if len(test):
        trained = _fit_calibrated([samples[i] for i in train], base, seed)
        answers = [trained.network_answer(samples[i][0]) for i in test]
        truth = [samples[i][1] for i in test]
        held = metrics.report([a.predicted_ms for a in answers], truth)
        held["coverage"] = metrics.coverage(
            [a.low_ms for a in answers], [a.high_ms for a in answers], truth
        )
    predictor = _fit_calibrated(samples, base, seed)
    predictor.device = device if device is not None else (base.device if base else "")
    if base is not None and base.device == predictor.device:
        predictor.meta.update({k: base.meta[k] for k in (*ENV_META, "batch") if k in base.meta})
    elif base is not None:
        predictor.meta["prior"] = base.device
    predictor.stamp(
        source="networks", n_networks=len(samples), n_train=len(train), n_test=len(test)
    )
    return predictor, held


def train_indices(n: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n_train` of `n` networks at random (seeded) to fit on, the rest to score."""
    if not 2 <= n_train < n:
        raise LatkitError(
            f"--train {n_train}: needs at least 2 networks to fit and 1 to score, of {n}"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_train]), np.sort(order[n_train:])
