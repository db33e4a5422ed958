"""`LatencyPredictor`: F(op) in milliseconds, a measured table in front of learned models.

An exact table hit returns the measured value, a zero op costs nothing, anything else goes to the
model family that cross-validation picked for its kind of op (inside the fitted range, or outside
it: see `predictors.selection`). Every answer comes with a prediction interval calibrated on
held-out residuals (`predictors.intervals`). Answers are cached per op spec: the search asks for
the same candidates every step. Saved as one JSON file (trees are stored as arrays), so loading
never unpickles anything.
"""

from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latkit.errors import LatkitError
from latkit.files import read_json, write_atomic
from latkit.ops import OpSpec
from latkit.predictors.intervals import LEVEL, Interval
from latkit.predictors.models import Model, make_model, model_from_state
from latkit.predictors.selection import OpRange, select

FORMAT = "latkit-predictor"
FORMAT_VERSION = 2
DEFAULT_FAMILIES: tuple[str, ...] = ("additive", "loglinear", "gbdt", "hybrid")
#: where an op's latency came from, in `LatencyPredictor.explain`
SOURCES = ("table", "model", "model, outside the fitted range", "zero")
#: networks nearest a search's target that set the overhead for it (`fit_overhead(near_ms=)`)
LOCAL_NETWORKS = 3
#: networks whose op sums are within this factor are compared for the per-op cost
COMPARABLE = 2.0


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


class LatencyPredictor:
    """F(op) -> ms for one device. Estimator-style: the constructor only stores its parameters.

    Parameters:
        family: a model family name (see `predictors.models.MODELS`), or "auto" to keep, among
            `families`, the best on random folds for ops inside the fitted range and the best
            with the widest ops held out for ops outside it.
        families: the families "auto" compares.
        seed: seeds the selection splits and the tree ensembles.
        device: the device name this predictor is for.
        meta: where its data came from (runtime, runtime_version, batch, env_id, ...).
        overhead_ms: per-network time beyond the sum of its ops (e.g. input copies, cache misses).
        per_op_ms: time each op's isolated timing includes but a whole network pays only once
            (the runtime's per-call cost); subtracted from every non-zero op inside a network.
        level: the nominal coverage of its prediction intervals.
    """

    def __init__(
        self,
        family: str = "auto",
        families: Sequence[str] = DEFAULT_FAMILIES,
        seed: int = 0,
        device: str = "",
        meta: dict[str, Any] | None = None,
        overhead_ms: float = 0.0,
        per_op_ms: float = 0.0,
        level: float = LEVEL,
    ) -> None:
        self.family = family
        self.families = tuple(families)
        self.seed = seed
        self.device = device
        self.meta = dict(meta or {})
        self.overhead_ms = float(overhead_ms)
        self.per_op_ms = float(per_op_ms)
        self.level = float(level)
        self._cache: dict[OpSpec, tuple[float, float, float, str]] = {}

    # --- fitting ----------------------------------------------------------------------------------

    def fit(self, ops: Sequence[OpSpec], latencies_ms: Sequence[float]) -> LatencyPredictor:
        """Table every (op, latency) row, select and fit the model families on them, and
        calibrate the op intervals on the selection's held-out residuals.

        Rows of the same op are merged by their median; zero ops are skipped (they cost 0).
        """
        ops, y = list(ops), np.asarray(latencies_ms, dtype=float)
        if len(ops) != len(y):
            raise LatkitError(f"fit got {len(ops)} ops but {len(y)} latencies")
        rows: dict[OpSpec, list[float]] = {}
        for op, value in zip(ops, y):
            if op.type == "zero":
                continue
            if not np.isfinite(value) or value <= 0:
                raise LatkitError(f"latency of {op.key} must be a positive number, got {value}")
            rows.setdefault(op, []).append(float(value))
        if not rows:
            raise LatkitError("fit needs at least one measured non-zero op")
        self.table_ = {op: float(np.median(values)) for op, values in rows.items()}
        table_ops, table_y = list(self.table_), np.array(list(self.table_.values()))
        families = self.families if self.family == "auto" else (self.family,)
        self.selection_ = select(table_ops, table_y, families, self.seed)
        self.comparison_ = self.selection_.scores
        chosen, extrap = self.selection_.family, self.selection_.extrap_family
        self.model_ = make_model(chosen, self.seed).fit(table_ops, table_y)
        self.extrap_model_ = (
            None if extrap == chosen else make_model(extrap, self.seed).fit(table_ops, table_y)
        )
        self.range_ = OpRange.of(table_ops)
        self.op_interval_ = Interval.calibrate(self.selection_.residuals, "ops", self.level)
        self.extrap_interval_ = Interval.calibrate(
            self.selection_.extrap_residuals, "ops outside the fitted range", self.level
        )
        repeats = Interval.calibrate(_repeat_residuals(rows), "repeated measurements", self.level)
        self.table_interval_ = repeats if repeats.finite else self.op_interval_
        self.network_interval_ = None
        self.meta["family"] = chosen
        self.meta["extrapolation_family"] = extrap
        self._cache = {}
        return self

    def with_model(
        self,
        model: Model,
        table: dict[OpSpec, float] | None = None,
        network_interval: Interval | None = None,
    ) -> LatencyPredictor:
        """Install an already fitted model (e.g. one fitted from network sums), a table, and the
        network interval calibrated for it."""
        self.table_ = dict(table or {})
        self.model_ = model
        self.extrap_model_ = None
        self.range_ = None
        self.comparison_ = {}
        self.op_interval_ = self.extrap_interval_ = Interval(np.inf, 0, "ops", self.level)
        self.table_interval_ = self.op_interval_
        self.network_interval_ = network_interval
        self.meta["family"] = model.name
        self.meta.pop("extrapolation_family", None)
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

    def _compute(self, ops: list[OpSpec]) -> list[tuple[float, float, float, str]]:
        """(ms, low, high, source) of each op. A table entry is a measurement, and another
        measurement of the op lands within the spread of the table's repeated rows (where it
        has enough of them; else the model's interval stands in). Outside the fitted range the
        interval is the wider of the two model calibrations."""
        out: list[tuple[float, float, float, str]] = [(0.0, 0.0, 0.0, "zero")] * len(ops)
        inside_interval = self.op_interval_
        outside_interval = max(self.op_interval_, self.extrap_interval_, key=lambda i: i.halfwidth)
        groups: dict[bool, list[int]] = {True: [], False: []}
        for i, op in enumerate(ops):
            if op.type == "zero":
                continue
            hit = self.table_.get(op)
            if hit is None:
                groups[self.range_ is None or self.range_.inside(op)].append(i)
            else:
                low, high = self.table_interval_.bounds(hit)
                out[i] = (hit, float(low), float(high), "table")
        for inside, rows in groups.items():
            if not rows:
                continue
            model = self._fitted() if inside else (self.extrap_model_ or self._fitted())
            interval = inside_interval if inside else outside_interval
            values = model.predict([ops[i] for i in rows])
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

    def contribution(self, ops: Sequence[OpSpec]) -> np.ndarray:
        """What each op adds to a whole network: F(op) less the per-call cost paid once per
        network (0 for zero ops). The search's E[LAT] sums these."""
        values = self.predict(ops)
        timed = np.array([op.type != "zero" for op in ops], dtype=bool)
        return np.where(timed, values - self.per_op_ms, 0.0)

    def predict_network(self, ops: Sequence[OpSpec]) -> float:
        """A whole network's latency: the sum of its ops' contributions plus the overhead."""
        return float(self.contribution(ops).sum() + self.overhead_ms)

    def network_answer(self, ops: Sequence[OpSpec]) -> NetworkAnswer:
        """A whole network's latency with its interval: calibrated on held-out networks when
        the predictor has them, else the ops' intervals added up (as if every op erred the same
        way: wide, and blind to what only whole networks show)."""
        predicted = self.predict_network(ops)
        if self.network_interval_ is not None:
            low, high = self.network_interval_.bounds(predicted)
            return NetworkAnswer(predicted, float(low), float(high), self.level, "networks")
        low, high = self.predict_interval(ops)
        timed = np.array([op.type != "zero" for op in ops], dtype=bool)
        shift = self.per_op_ms * timed.sum() - self.overhead_ms
        return NetworkAnswer(
            predicted, float(low.sum() - shift), float(high.sum() - shift), self.level, "ops"
        )

    def is_measured(self, op: OpSpec) -> bool:
        """Whether `op` is answered from the table rather than the model."""
        self._fitted()
        return op in self.table_

    def fit_overhead(
        self, samples: Sequence[tuple[Sequence[OpSpec], float]], near_ms: float | None = None
    ) -> float:
        """Fit gap = overhead - per_op * (non-zero ops) over whole networks, where gap is
        measured minus the sum of F.

        Each op timed alone pays the runtime's per-call cost once, a network pays it once in
        all, so networks with fewer ops (more zero ops) sit higher above their op sum. per_op is
        the Theil-Sen slope (median of pairwise slopes), so a network timed during a burst of
        background load moves neither number, over pairs of networks of comparable size (op sums
        within a factor `COMPARABLE`), so that F's relative error on networks of another size
        (another space) is not taken for a per-op cost. It is bounded above by the smallest F of
        any op in the table or the networks, so that no op's contribution is negative; with
        fewer than 3 networks or no such pair it stays as it was (0 for a new predictor). The
        overhead is the median of gap + per_op * ops (`fit_level`), over every network, or with
        `near_ms` over the `LOCAL_NETWORKS` that F (with its overhead so far) predicts nearest
        it: a search asks F about networks predicted at about its target (the ones it derived
        and timed among them), and there the local level is what counts.
        """
        sums = np.array([float(self.predict(ops).sum()) for ops, _ in samples])
        gaps = np.array([latency for _, latency in samples]) - sums
        counts = np.array([sum(op.type != "zero" for op in ops) for ops, _ in samples])
        i, j = np.triu_indices(len(gaps), k=1)
        pairs = (counts[i] != counts[j]) & (
            np.maximum(sums[i], sums[j]) <= COMPARABLE * np.minimum(sums[i], sums[j])
        )
        if len(gaps) >= 3 and pairs.any():
            i, j = i[pairs], j[pairs]
            slope = float(np.median((gaps[j] - gaps[i]) / (counts[j] - counts[i])))
            timed = [op for ops, _ in samples for op in ops if op.type != "zero"]
            smallest = float(self.predict([*getattr(self, "table_", {}), *timed]).min())
            self.per_op_ms = min(-slope, smallest)
        self.meta["overhead_networks"] = len(gaps)
        if near_ms is not None and len(samples) > LOCAL_NETWORKS:
            predicted = np.array([self.predict_network(ops) for ops, _ in samples])
            nearest = np.argsort(np.abs(predicted - near_ms))[:LOCAL_NETWORKS]
            samples = [samples[k] for k in nearest]
        return self.fit_level(samples)

    def fit_level(self, samples: Sequence[tuple[Sequence[OpSpec], float]]) -> float:
        """Set the overhead alone, per_op kept: the median over `samples` of measured minus the
        ops' contributions (0 without samples). `fit_overhead` ends here; a search calls it on
        its own timings of the networks it derived, all predicted at its target, which say best
        what the networks it derives next will pay."""
        levels = [latency - float(self.contribution(ops).sum()) for ops, latency in samples]
        self.overhead_ms = float(np.median(levels)) if levels else 0.0
        return self.overhead_ms

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
            "meta": self.meta,
            "params": {
                "family": self.family,
                "families": list(self.families),
                "seed": self.seed,
                "level": self.level,
            },
            "table": [[op.to_dict(), ms] for op, ms in self.table_.items()],
            "model": model.to_state(),
            "extrap_model": None if self.extrap_model_ is None else self.extrap_model_.to_state(),
            "range": None if self.range_ is None else self.range_.to_state(),
            "intervals": {
                "ops": self.op_interval_.to_state(),
                "extrap": self.extrap_interval_.to_state(),
                "table": self.table_interval_.to_state(),
                "networks": None if network is None else network.to_state(),
            },
            "comparison": self.comparison_,
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
            )
            predictor.table_ = {OpSpec.from_dict(op): float(ms) for op, ms in state["table"]}
            predictor.model_ = model_from_state(state["model"])
            extrap, ranges, intervals = state["extrap_model"], state["range"], state["intervals"]
            predictor.extrap_model_ = None if extrap is None else model_from_state(extrap)
            predictor.range_ = None if ranges is None else OpRange.from_state(ranges)
            predictor.op_interval_ = Interval.from_state(intervals["ops"])
            predictor.extrap_interval_ = Interval.from_state(intervals["extrap"])
            predictor.table_interval_ = Interval.from_state(intervals["table"])
            network = intervals["networks"]
            predictor.network_interval_ = None if network is None else Interval.from_state(network)
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
