"""`LatencyPredictor`: F(op) in milliseconds, a measured table in front of learned models.

An exact table hit returns the measured value, a zero op costs nothing, anything else goes to the
model family that cross-validation picked for its kind of op (inside the fitted range, or outside
it: see `predictors.selection`). Every answer comes with a prediction interval calibrated on
held-out residuals (`predictors.intervals`). Answers are cached per op spec: the search asks for
the same candidates every step. Saved as one JSON file (trees are stored as arrays), so loading
never unpickles anything.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latkit import metrics
from latkit.errors import LatkitError
from latkit.files import read_json, write_atomic
from latkit.ops import OpSpec
from latkit.predictors.intervals import LEVEL, Interval
from latkit.predictors.models import Model, make_model, model_from_state
from latkit.predictors.network_terms import (
    FEATURES,
    CVPlusInterval,
    NetworkGroup,
    NetworkTerms,
    cv_plus,
    fit_terms,
    group_key,
    network_row,
    op_features,
)
from latkit.predictors.selection import MIN_ROWS_TO_SELECT, NOVEL_AXES, OpRange, select

FORMAT = "latkit-predictor"
FORMAT_VERSION = 4
#: where an op's latency came from, in `LatencyPredictor.explain`
SOURCES = ("table", "model", "model, outside the fitted range", "zero")
#: fewer whole networks than this move only the overhead: too few to tell the terms apart
MIN_NETWORKS = 3


class PredictorMismatchWarning(UserWarning):
    """A predictor fitted for another device, runtime version or batch size was loaded."""


@dataclass(frozen=True)
class OpAnswer:
    """One op of a network as F answers for it."""

    op: OpSpec
    ms: float
    low_ms: float
    high_ms: float
    source: str


#: the interval source of a network the network terms price at or below 0 (`network_answer`)
BEYOND_TERMS = "none: the network terms price it at or below 0, beyond the networks they fit"


@dataclass(frozen=True)
class NetworkAnswer:
    """F of a whole network: the point prediction and its interval (`interval_source` says what
    calibrated it: held-out networks, or the ops' intervals added up)."""

    predicted_ms: float
    low_ms: float
    high_ms: float
    level: float
    interval_source: str


def _repeat_residuals(rows: dict[OpSpec, list[float]]) -> np.ndarray:
    """|log| ratio of each repeated measurement to the median of the op's other ones."""
    out = []
    for values in rows.values():
        for i, value in enumerate(values if len(values) > 1 else ()):
            others = values[:i] + values[i + 1 :]
            out.append(abs(np.log(value / np.median(others))))
    return np.array(out)


def _table_rows(
    ops: Sequence[OpSpec], latencies_ms: Sequence[float], unstable: Sequence[bool] | None
) -> tuple[dict[OpSpec, list[float]], set[OpSpec]]:
    """Each non-zero op's latencies, and the ops whose every row is flagged unstable."""
    ops, y = list(ops), np.asarray(latencies_ms, dtype=float)
    flags = [False] * len(ops) if unstable is None else [bool(f) for f in unstable]
    if not len(ops) == len(y) == len(flags):
        raise LatkitError(f"fit got {len(ops)} ops, {len(y)} latencies and {len(flags)} flags")
    rows: dict[OpSpec, list[float]] = {}
    stable: set[OpSpec] = set()
    for op, value, flag in zip(ops, y, flags):
        if op.type == "zero":
            continue
        if not np.isfinite(value) or value <= 0:
            raise LatkitError(f"latency of {op.key} must be a positive number, got {value}")
        rows.setdefault(op, []).append(float(value))
        if not flag:
            stable.add(op)
    if not rows:
        raise LatkitError("fit needs at least one measured non-zero op")
    return rows, set(rows) - stable


def _network_interval(state: dict[str, Any] | None) -> Interval | CVPlusInterval | None:
    if state is None:
        return None
    return (
        CVPlusInterval.from_state(state)
        if state.get("kind") == "cv+"
        else Interval.from_state(state)
    )


class LatencyPredictor:
    """F(op) -> ms for one device. Estimator-style: the constructor only stores its parameters.

    Parameters:
        family: a model family name (see `predictors.models.MODELS`), or "auto" to keep, among
            `families`, the best on random folds for ops inside the fitted range and the best
            along the extrapolation axes for ops outside it (`predictors.selection`).
        families: the families "auto" compares; empty: every registered family.
        seed: seeds the selection splits and the tree ensembles.
        device: the device name this predictor is for.
        meta: where its data came from (runtime, runtime_version, batch, env_id, ...).
        overhead_ms: per-network time beyond its ops (e.g. input copies).
        per_op_ms: time each op's isolated timing includes but a whole network pays only once
            (the runtime's per-call cost); subtracted from every non-zero op inside a network.
        scale: what an op's isolated time is multiplied by inside a network (caches no
            longer warm from its own previous call).
        per_mb_ms: time per megabyte of activations and weights an op moves inside a network.
        level: the nominal coverage of its prediction intervals.

    The four network terms are `predictors.network_terms.NetworkTerms`; `fit_overhead` fits
    them on whole-network timings.
    """

    def __init__(
        self,
        family: str = "auto",
        families: Sequence[str] = (),
        seed: int = 0,
        device: str = "",
        meta: dict[str, Any] | None = None,
        overhead_ms: float = 0.0,
        per_op_ms: float = 0.0,
        level: float = LEVEL,
        scale: float = 1.0,
        per_mb_ms: float = 0.0,
    ) -> None:
        self.family = family
        self.families = tuple(families)
        self.seed = seed
        self.device = device
        self.meta = dict(meta or {})
        self.overhead_ms = float(overhead_ms)
        self.per_op_ms = float(per_op_ms)
        self.level = float(level)
        self.scale = float(scale)
        self.per_mb_ms = float(per_mb_ms)
        self._cache: dict[OpSpec, tuple[float, float, float, str]] = {}

    # --- fitting ----------------------------------------------------------------------------------

    def fit(
        self,
        ops: Sequence[OpSpec],
        latencies_ms: Sequence[float],
        unstable: Sequence[bool] | None = None,
    ) -> LatencyPredictor:
        """Table every (op, latency) row, select and fit the model families on them, and
        calibrate the op intervals on the selection's honest held-out residuals.

        Rows of the same op are merged by their median; zero ops are skipped (they cost 0).
        Ops whose every row is flagged `unstable` (rounds that still disagreed after retries)
        are tabled, since their pooled median is still the best number for them, but left out
        of the model and of its intervals while `MIN_ROWS_TO_SELECT` stable ops remain: one
        noisy row would pull the model for every op and widen every interval.
        """
        rows, shaky = _table_rows(ops, latencies_ms, unstable)
        self.table_ = {op: float(np.median(values)) for op, values in rows.items()}
        modelled = [op for op in self.table_ if op not in shaky]
        if len(modelled) < MIN_ROWS_TO_SELECT:
            modelled = list(self.table_)
        model_y = np.array([self.table_[op] for op in modelled])
        families = None if self.family == "auto" else (self.family,)
        self.selection_ = select(modelled, model_y, families or self.families, self.seed)
        self.comparison_ = self.selection_.scores
        chosen, extrap = self.selection_.family, self.selection_.extrap_family
        self.model_ = make_model(chosen, self.seed).fit(modelled, model_y)
        self.axis_families_ = {"": extrap, **self.selection_.axis_families}
        self.extrap_models_ = {
            f: make_model(f, self.seed).fit(modelled, model_y)
            for f in set(self.axis_families_.values()) - {chosen}
        }
        self.range_ = OpRange.of(modelled)
        self.op_interval_ = Interval.calibrate(self.selection_.residuals, "ops", self.level)
        self.extrap_interval_ = Interval.calibrate(
            self.selection_.extrap_residuals, "ops outside the fitted range", self.level
        )
        repeats = Interval.calibrate(_repeat_residuals(rows), "repeated measurements", self.level)
        self.table_interval_ = repeats if repeats.finite else self.op_interval_
        self.network_interval_ = None
        self.groups_: dict[str, NetworkGroup] = {}
        self.meta.update(
            family=chosen,
            extrapolation_family=extrap,
            extrapolation_families=self.selection_.axis_families,
            unstable_ops=len(shaky),
        )
        self._cache = {}
        return self

    def with_model(
        self,
        model: Model,
        table: dict[OpSpec, float] | None = None,
        network_interval: Interval | None = None,
        fitted_on: Sequence[OpSpec] = (),
    ) -> LatencyPredictor:
        """Install an already fitted model (e.g. one fitted from network sums), a table, and the
        network interval calibrated for it. `fitted_on` are the ops of the networks it was
        fitted on: their range is F's fitted range, so that an op beyond it (a network of
        another space, a larger input) is answered as extrapolated, with no interval, rather
        than under the network interval of networks that never held it."""
        self.table_ = dict(table or {})
        self.model_ = model
        self.extrap_models_ = {}
        self.axis_families_ = {}
        ran = [op for op in fitted_on if op.type != "zero"]
        self.range_ = OpRange.of(ran) if ran else None
        self.comparison_ = {}
        self.op_interval_ = self.extrap_interval_ = Interval(np.inf, 0, "ops", self.level)
        self.table_interval_ = self.op_interval_
        self.network_interval_ = network_interval
        self.groups_ = {}
        self.meta["family"] = model.name
        self.meta.pop("extrapolation_family", None)
        self.meta.pop("extrapolation_families", None)
        self._cache = {}
        return self

    def calibrate_networks(self, residuals: Sequence[float]) -> Interval:
        """Set the network interval from held-out network residuals (|log| ratios)."""
        self.network_interval_ = Interval.calibrate(residuals, "networks", self.level)
        return self.network_interval_

    # --- predicting -------------------------------------------------------------------------------

    def _fitted(self) -> Model:
        model = getattr(self, "model_", None)
        if model is None:
            raise LatkitError("this latency predictor is not fitted; call fit() or load() first")
        return model

    def _route(self, op: OpSpec) -> tuple[str | None, bool]:
        """Which model answers an untabled op (None for the inside family, else the family
        kept for the axis along which it leaves the fitted range, "" when none was kept), and
        whether it is of a type or kind F never measured (`NOVEL_AXES`)."""
        axis = None if self.range_ is None else self.range_.axis(op)
        if axis is None:
            return None, False
        return self.axis_families_.get(axis, self.axis_families_.get("", "")), axis in NOVEL_AXES

    def _model_for(self, family: str | None) -> Model:
        if family is None:
            return self._fitted()
        return self.extrap_models_.get(family) or self._fitted()

    def _compute(self, ops: list[OpSpec]) -> list[tuple[float, float, float, str]]:
        """(ms, low, high, source) of each op. A table entry is a measurement, and another
        measurement of the op lands within the spread of the table's repeated rows (where it
        has enough of them; else the model's interval stands in). Outside the fitted range the
        family kept for that axis answers, and the interval is the wider of the two model
        calibrations; for an op of a type or kind (activation, squeeze-excite) F never
        measured, no residual calibrates one, and it is unbounded."""
        out: list[tuple[float, float, float, str]] = [(0.0, 0.0, 0.0, "zero")] * len(ops)
        outside_interval = max(self.op_interval_, self.extrap_interval_, key=lambda i: i.halfwidth)
        unknown = Interval(np.inf, 0, "nothing: a kind F never measured", self.level)
        routes: dict[tuple[str | None, bool], list[int]] = {}
        for i, op in enumerate(ops):
            if op.type == "zero":
                continue
            hit = self.table_.get(op)
            if hit is None:
                routes.setdefault(self._route(op), []).append(i)
            else:
                low, high = self.table_interval_.bounds(hit)
                out[i] = (hit, float(low), float(high), "table")
        for (family, novel), rows in routes.items():
            inside = family is None
            values = self._model_for(family).predict([ops[i] for i in rows])
            interval = self.op_interval_ if inside else unknown if novel else outside_interval
            low, high = interval.bounds(values)
            source = SOURCES[1] if inside else SOURCES[2]
            for i, v, lo, hi in zip(rows, values, low, high):
                out[i] = (float(v), float(lo), float(hi), source)
        return out

    def _answers(self, ops: Sequence[OpSpec]) -> list[tuple[float, float, float, str]]:
        self._fitted()
        cache = self._cache
        missing = list(dict.fromkeys(op for op in ops if op not in cache))
        if missing:
            cache.update(zip(missing, self._compute(missing)))
        return [cache[op] for op in ops]

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        """Latency (ms) of each op: measured if tabled, 0 for zero ops, else the model's."""
        return np.array([a[0] for a in self._answers(ops)], dtype=float)

    def predict_interval(self, ops: Sequence[OpSpec]) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of each op's interval: the calibrated factor around its answer (inf
        where too few held-out residuals calibrate it), (0, 0) for a zero op."""
        answers = self._answers(ops)
        return np.array([a[1] for a in answers]), np.array([a[2] for a in answers])

    def explain(self, ops: Sequence[OpSpec]) -> list[OpAnswer]:
        """Each op's answer and where it came from (see `SOURCES`)."""
        return [OpAnswer(op, *answer) for op, answer in zip(ops, self._answers(ops))]

    @property
    def terms(self) -> NetworkTerms:
        """The network terms (what a network pays beyond its ops), as one value."""
        return NetworkTerms(self.scale, self.per_op_ms, self.per_mb_ms, self.overhead_ms)

    def _set_terms(self, terms: NetworkTerms) -> None:
        self.scale, self.per_op_ms = terms.scale, terms.per_op_ms
        self.per_mb_ms, self.overhead_ms = terms.per_mb_ms, terms.overhead_ms

    def contribution(self, ops: Sequence[OpSpec]) -> np.ndarray:
        """What each op adds to a whole network: scale * F(op) less the per-call cost paid once
        per network, plus the cost of the bytes it moves (0 for zero ops). The search's E[LAT]
        sums these, plus `overhead_ms`."""
        ops = list(ops)
        return op_features(ops, self.predict(ops)) @ self.terms.coef

    def _row(self, ops: Sequence[OpSpec]) -> np.ndarray:
        ops = list(ops)
        return network_row(ops, self.predict(ops))

    def group_of(self, ops: Sequence[OpSpec]) -> NetworkGroup | None:
        """The network group (one space's terms) that prices `ops`: its own, else the nearest
        (same input size, then nearest op sum); None when no group was fitted."""
        groups = getattr(self, "groups_", {})
        if not groups:
            return None
        ops = list(ops)
        own = groups.get(group_key(ops))
        if own is not None:
            return own
        op_sum = float(self.predict(ops).sum())
        return min(groups.values(), key=lambda g: g.distance(ops, op_sum))

    def for_network(self, ops: Sequence[OpSpec]) -> LatencyPredictor:
        """A copy whose network terms and interval are those of the group `ops` belongs to,
        and no other group: what a search over one space refits and differentiates."""
        group = self.group_of(ops)
        clone = copy.copy(self)
        clone.meta = dict(self.meta)
        clone._cache = {}
        if group is not None:
            clone._set_terms(group.terms)
            clone.network_interval_ = group.interval
            clone.groups_ = {}
            clone.meta["network_group"] = group.key
        return clone

    def predict_network(self, ops: Sequence[OpSpec]) -> float:
        """A whole network's latency: the sum of its ops' contributions plus the overhead,
        under its group's network terms (`group_of`) where groups were fitted. Never below 0:
        terms that price a network at or below 0 (a negative overhead on a network of one or
        two ops) are beyond the networks they were fitted on, which `network_answer` says."""
        group = self.group_of(ops)
        terms = self.terms if group is None else group.terms
        return max(float(terms.predict(self._row(ops))), 0.0)

    def network_answer(self, ops: Sequence[OpSpec]) -> NetworkAnswer:
        """A whole network's latency with its interval: CV+ on held-out calibration networks
        of its group (or residuals of held-out networks) when the predictor has them, else the
        ops' intervals added up (as if every op erred the same way: wide, and blind to what
        only whole networks show). A network priced at 0 (`predict_network`) has no interval:
        (0, inf), with the reason the interval already had, else `BEYOND_TERMS`."""
        answer = self._network_answer(ops, self.predict_network(ops))
        if answer.predicted_ms > 0:
            return answer
        source = answer.interval_source if math.isinf(answer.high_ms) else BEYOND_TERMS
        return NetworkAnswer(0.0, 0.0, math.inf, self.level, source)

    def _network_answer(self, ops: Sequence[OpSpec], predicted: float) -> NetworkAnswer:
        group = self.group_of(ops)
        interval = self.network_interval_ if group is None else group.interval
        scale = (self.terms if group is None else group.terms).scale
        if isinstance(interval, CVPlusInterval):
            low, high = interval.bounds(self._row(ops))
            return self._widened(ops, predicted, (low, high, scale), "networks (CV+)")
        if interval is not None:
            low, high = interval.bounds(predicted)
            return self._widened(ops, predicted, (float(low), float(high), scale), "networks")
        ops = list(ops)
        low, high = (
            float(self.terms.predict(network_row(ops, v))) for v in self.predict_interval(ops)
        )
        return NetworkAnswer(predicted, low, high, self.level, "ops")

    def _widened(
        self,
        ops: Sequence[OpSpec],
        predicted: float,
        bounds: tuple[float, float, float],
        source: str,
    ) -> NetworkAnswer:
        """A network interval calibrated on networks whose ops F had measured, widened by the
        intervals of the ops it answers outside the fitted range (added up, as if they all
        erred the same way): the networks that calibrated it never held such ops, so it says
        nothing about them. An op of a kind F never measured leaves the top unbounded.
        `bounds` is (low, high, the network terms' scale on each op)."""
        low, high, scale = bounds
        answers = [a for a in self._answers(ops) if a[3] == SOURCES[2]]
        if not answers:
            return NetworkAnswer(predicted, low, high, self.level, source)
        below = sum(ms - lo for ms, lo, _, _ in answers) * scale
        above = sum(hi - ms for ms, _, hi, _ in answers) * scale
        return NetworkAnswer(
            predicted,
            max(low - below, 0.0),
            high + above,
            self.level,
            f"{source}, widened by {len(answers)} ops outside the fitted range",
        )

    def is_measured(self, op: OpSpec) -> bool:
        """Whether `op` is answered from the table rather than the model."""
        self._fitted()
        return op in self.table_

    def _network_design(
        self, samples: Sequence[tuple[Sequence[OpSpec], float]]
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """(feature rows, measured ms, the largest per-call cost that keeps every op's
        contribution >= 0: the smallest F of any tabled or sampled op)."""
        x = np.array([self._row(ops) for ops, _ in samples]).reshape(len(samples), len(FEATURES))
        y = np.array([float(latency) for _, latency in samples])
        timed = [op for ops, _ in samples for op in ops if op.type != "zero"]
        known = [*getattr(self, "table_", {}), *timed]
        cap = float(self.predict(known).min()) if known else np.inf
        return x, y, cap

    def fit_overhead(
        self,
        samples: Sequence[tuple[Sequence[OpSpec], float]],
        near_ms: float | None = None,
        seed: int | None = None,
    ) -> float:
        """Fit the network terms (`predictors.network_terms`) on whole networks (ops, measured
        ms), and return the overhead.

        With `near_ms`, the overhead is the level of the networks F predicts near it (a search
        asks F about networks at its target). With fewer than `MIN_NETWORKS` networks only
        the overhead moves: the median of measured minus the other terms (0 without any).
        """
        self.meta["overhead_networks"] = len(samples)
        if len(samples) < MIN_NETWORKS:
            levels = [latency - float(self.contribution(ops).sum()) for ops, latency in samples]
            self.overhead_ms = float(np.median(levels)) if levels else 0.0
            return self.overhead_ms
        x, y, cap = self._network_design(samples)
        seed = self.seed if seed is None else seed
        terms, ridge = fit_terms(x, y, seed=seed, cap_per_op=cap, near_ms=near_ms)
        self._set_terms(terms)
        self.meta["network_ridge"] = ridge
        return self.overhead_ms

    def fit_network_terms(
        self, samples: Sequence[tuple[Sequence[OpSpec], float]], seed: int | None = None
    ) -> dict[str, dict[str, float]]:
        """Network terms per group of networks (`group_key`: one space's networks), each with
        its CV+ interval (every network predicted by terms fitted, ridge chosen, without it):
        one space's networks never price another's. Groups of fewer than `MIN_NETWORKS` are
        left out (their networks take the nearest group's terms). The attributes' terms are
        fitted on all networks, for networks when no group was. Returns each group's held-out
        accuracy, also kept in `meta["network_cv"]`."""
        seed = self.seed if seed is None else seed
        self.fit_overhead(samples, seed=seed)
        by_key: dict[str, list[tuple[Sequence[OpSpec], float]]] = {}
        for ops, latency in samples:
            by_key.setdefault(group_key(list(ops)), []).append((ops, latency))
        self.groups_ = {}
        for key, members in by_key.items():
            if len(members) >= MIN_NETWORKS:
                self.groups_[key] = self._fit_group(key, members, seed)
        self.network_interval_ = None
        self.meta["network_cv"] = {
            k: {"n": len(by_key[k]), **g.held_out} for k, g in self.groups_.items()
        }
        return self.meta["network_cv"]

    def _fit_group(
        self, key: str, samples: Sequence[tuple[Sequence[OpSpec], float]], seed: int
    ) -> NetworkGroup:
        x, y, cap = self._network_design(samples)
        terms, _ = fit_terms(x, y, seed=seed, cap_per_op=cap)
        interval, guesses = cv_plus(x, y, self.level, seed=seed, cap_per_op=cap)
        held = metrics.report(guesses, y)
        return NetworkGroup(key, terms, interval, float(np.median(x[:, 0])), held)

    # --- persistence ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        model = self._fitted()
        network = self.network_interval_
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "device": self.device,
            "overhead_ms": self.overhead_ms,
            "per_op_ms": self.per_op_ms,
            "scale": self.scale,
            "per_mb_ms": self.per_mb_ms,
            "meta": self.meta,
            "params": {
                "family": self.family,
                "families": list(self.families),
                "seed": self.seed,
                "level": self.level,
            },
            "table": [[op.to_dict(), ms] for op, ms in self.table_.items()],
            "model": model.to_state(),
            "extrap_models": {f: m.to_state() for f, m in self.extrap_models_.items()},
            "axis_families": self.axis_families_,
            "range": None if self.range_ is None else self.range_.to_state(),
            "intervals": {
                "ops": self.op_interval_.to_state(),
                "extrap": self.extrap_interval_.to_state(),
                "table": self.table_interval_.to_state(),
                "networks": None if network is None else network.to_state(),
            },
            "comparison": self.comparison_,
            "groups": [g.to_state() for g in getattr(self, "groups_", {}).values()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], source: str = "predictor") -> LatencyPredictor:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise LatkitError(f"{source}: not a latkit predictor file")
        if state.get("version") != FORMAT_VERSION:
            raise LatkitError(
                f"{source}: predictor format version {state.get('version')}, this latkit reads "
                f"{FORMAT_VERSION}; refit it with `latkit fit`"
            )
        try:
            params = state["params"]
            predictor = cls(
                family=params["family"],
                families=params["families"],
                seed=params["seed"],
                device=state["device"],
                meta=state["meta"],
                overhead_ms=state["overhead_ms"],
                per_op_ms=state["per_op_ms"],
                level=params["level"],
                scale=state["scale"],
                per_mb_ms=state["per_mb_ms"],
            )
            predictor.table_ = {OpSpec.from_dict(op): float(ms) for op, ms in state["table"]}
            predictor.model_ = model_from_state(state["model"])
            ranges, intervals = state["range"], state["intervals"]
            predictor.extrap_models_ = {
                f: model_from_state(m) for f, m in state["extrap_models"].items()
            }
            predictor.axis_families_ = dict(state["axis_families"])
            predictor.range_ = None if ranges is None else OpRange.from_state(ranges)
            predictor.op_interval_ = Interval.from_state(intervals["ops"])
            predictor.extrap_interval_ = Interval.from_state(intervals["extrap"])
            predictor.table_interval_ = Interval.from_state(intervals["table"])
            network = intervals["networks"]
            predictor.network_interval_ = _network_interval(network)
            groups = [NetworkGroup.from_state(g) for g in state["groups"]]
            predictor.groups_ = {g.key: g for g in groups}
            predictor.comparison_ = state.get("comparison", {})
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise LatkitError(f"{source}: damaged predictor file ({exc!r}); refit it") from None
        return predictor

    def save(self, path: str | Path) -> Path:
        """Write the predictor as JSON, atomically (an interrupted save keeps the old file)."""
        return write_atomic(path, json.dumps(self.to_state(), indent=1, default=float) + "\n")

    @classmethod
    def load(cls, path: str | Path, expect: dict[str, Any] | None = None) -> LatencyPredictor:
        """Read a saved predictor. `expect` ({"device", "runtime_version", "batch", ...}) is what
        the caller is about to use it for; every known field that differs is warned about."""
        path = Path(path)
        state = read_json(path, "predictor")
        predictor = cls.from_state(state, str(path))
        for message in predictor.mismatches(expect or {}):
            warnings.warn(f"{path}: {message}", PredictorMismatchWarning, stacklevel=2)
        return predictor

    def mismatches(self, expect: dict[str, Any]) -> list[str]:
        """One line per field of `expect` (`device` or a `meta` field such as runtime_version,
        batch, threads) for which this predictor was fitted with a different, known value."""
        out = []
        for field, wanted in expect.items():
            have = self.device if field == "device" else self.meta.get(field)
            if have in (None, "") or wanted in (None, "") or str(have) == str(wanted):
                continue
            out.append(
                f"predictor was fitted for {field} {have!r}, but is used for {field} "
                f"{wanted!r}; its numbers may not hold (refit with `latkit fit`)"
            )
        return out

    def stamp(self, **meta: Any) -> LatencyPredictor:
        """Record provenance in `meta` (plus the fitting time)."""
        self.meta.update(meta)
        self.meta["fitted_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
        return self

    def __repr__(self) -> str:
        family = self.meta.get("family", self.family)
        return f"LatencyPredictor(device={self.device!r}, family={family!r})"
