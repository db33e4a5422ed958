"""`LatencyPredictor`: F(op) in milliseconds, a measured table in front of a learned model.

An exact table hit returns the measured value, a zero op costs nothing, anything else goes to the
model family that cross-validation picked. Answers are cached per op spec: the search asks for the
same candidates every step. Saved as one JSON file (trees are stored as arrays), so loading never
unpickles anything.
"""

from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latkit import metrics
from latkit.errors import LatkitError
from latkit.files import read_json, write_atomic
from latkit.ops import OpSpec
from latkit.predictors.models import Model, make_model, model_from_state

FORMAT = "latkit-predictor"
FORMAT_VERSION = 1
DEFAULT_FAMILIES: tuple[str, ...] = ("additive", "loglinear", "gbdt", "hybrid")
#: with fewer rows than this, cross-validation says nothing: the cost model is used as is
MIN_ROWS_TO_SELECT = 10
#: networks nearest a search's target that set the overhead for it (`fit_overhead(near_ms=)`)
LOCAL_NETWORKS = 3
#: networks whose op sums are within this factor are compared for the per-op cost
COMPARABLE = 2.0


class PredictorMismatchWarning(UserWarning):
    """A predictor fitted for another device, runtime version or batch size was loaded."""


Split = tuple[np.ndarray, np.ndarray]


def selection_splits(ops: Sequence[OpSpec], folds: int, seed: int) -> tuple[list[Split], Split]:
    """Random folds, plus one extrapolation split that holds out the widest fifth of the ops.

    The learned model only ever answers for ops the table lacks, which are typically wider or
    larger than what was profiled, so a family is judged on both kinds of held-out op.
    """
    order = np.random.default_rng(seed).permutation(len(ops))
    random = [(np.setdiff1d(order, part), part) for part in np.array_split(order, folds)]
    by_width = np.array(sorted(range(len(ops)), key=lambda i: (ops[i].cin, ops[i].macs)))
    n_wide = max(1, len(ops) // 5)
    return random, (by_width[:-n_wide], by_width[-n_wide:])


def compare_families(
    ops: Sequence[OpSpec],
    latencies_ms: np.ndarray,
    families: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Each family's RMSPE over the random folds and on the extrapolation split (same splits for
    every family); `score`, their mean, is what "auto" minimises."""
    random, (wide_train, wide_test) = selection_splits(ops, folds, seed)

    def fitted(family: str, rows: np.ndarray) -> Model:
        return make_model(family, seed).fit([ops[i] for i in rows], latencies_ms[rows])

    out: dict[str, dict[str, float]] = {}
    for family in families:
        guess = np.zeros(len(ops))
        for train, test in random:
            guess[test] = fitted(family, train).predict([ops[i] for i in test])
        cv = metrics.rmspe(guess, latencies_ms)
        wide = fitted(family, wide_train).predict([ops[i] for i in wide_test])
        extrap = metrics.rmspe(wide, latencies_ms[wide_test])
        out[family] = {"cv_rmspe": cv, "extrap_rmspe": extrap, "score": (cv + extrap) / 2}
    return out


def pick_family(
    ops: Sequence[OpSpec], latencies_ms: np.ndarray, families: Sequence[str], seed: int = 0
) -> tuple[str, dict[str, dict[str, float]]]:
    """(the family with the best score, every family's scores); with too few rows to
    cross-validate, the cost model (`additive`), which needs the fewest."""
    if len(ops) < MIN_ROWS_TO_SELECT:
        return "additive", {}
    scores = compare_families(ops, latencies_ms, families, seed=seed)
    return min(scores, key=lambda f: scores[f]["score"]), scores


class LatencyPredictor:
    """F(op) -> ms for one device. Estimator-style: the constructor only stores its parameters.

    Parameters:
        family: a model family name (see `predictors.models.MODELS`), or "auto" to keep the
            family with the best cross-validated score among `families`.
        families: the families "auto" compares.
        seed: seeds the selection splits and the tree ensembles.
        device: the device name this predictor is for.
        meta: where its data came from (runtime, runtime_version, batch, env_id, ...).
        overhead_ms: per-network time beyond the sum of its ops (e.g. input copies, cache misses).
        per_op_ms: time each op's isolated timing includes but a whole network pays only once
            (the runtime's per-call cost); subtracted from every non-zero op inside a network.
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
    ) -> None:
        self.family = family
        self.families = tuple(families)
        self.seed = seed
        self.device = device
        self.meta = dict(meta or {})
        self.overhead_ms = float(overhead_ms)
        self.per_op_ms = float(per_op_ms)
        self._cache: dict[OpSpec, float] = {}

    # --- fitting ----------------------------------------------------------------------------------

    def fit(self, ops: Sequence[OpSpec], latencies_ms: Sequence[float]) -> LatencyPredictor:
        """Table every (op, latency) row and fit the model family on them.

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
        if self.family == "auto":
            chosen, self.comparison_ = pick_family(table_ops, table_y, self.families, self.seed)
        else:
            chosen, self.comparison_ = self.family, {}
        self.model_ = make_model(chosen, self.seed).fit(table_ops, table_y)
        self.meta["family"] = chosen
        self._cache = {}
        return self

    def with_model(
        self, model: Model, table: dict[OpSpec, float] | None = None
    ) -> LatencyPredictor:
        """Install an already fitted model (e.g. one fitted from network sums) and a table."""
        self.table_ = dict(table or {})
        self.model_ = model
        self.comparison_ = {}
        self.meta["family"] = model.name
        self._cache = {}
        return self

    # --- predicting -------------------------------------------------------------------------------

    def _fitted(self) -> Model:
        model = getattr(self, "model_", None)
        if model is None:
            raise LatkitError("this latency predictor is not fitted; call fit() or load() first")
        return model

    def _compute(self, ops: list[OpSpec]) -> np.ndarray:
        out = np.zeros(len(ops))
        learn = []
        for i, op in enumerate(ops):
            if op.type == "zero":
                continue
            hit = self.table_.get(op)
            if hit is None:
                learn.append(i)
            else:
                out[i] = hit
        if learn:
            out[learn] = self._fitted().predict([ops[i] for i in learn])
        return out

    def predict(self, ops: Sequence[OpSpec]) -> np.ndarray:
        """Latency (ms) of each op: measured if tabled, 0 for zero ops, else the model's."""
        self._fitted()
        cache = self._cache
        out = np.empty(len(ops))
        missing = []
        for i, op in enumerate(ops):
            value = cache.get(op)
            if value is None:
                missing.append(i)
            else:
                out[i] = value
        if missing:
            todo = list(dict.fromkeys(ops[i] for i in missing))
            cache.update(zip(todo, self._compute(todo).tolist()))
            for i in missing:
                out[i] = cache[ops[i]]
        return out

    def contribution(self, ops: Sequence[OpSpec]) -> np.ndarray:
        """What each op adds to a whole network: F(op) less the per-call cost paid once per
        network (0 for zero ops). The search's E[LAT] sums these."""
        values = self.predict(ops)
        timed = np.array([op.type != "zero" for op in ops], dtype=bool)
        return np.where(timed, values - self.per_op_ms, 0.0)

    def predict_network(self, ops: Sequence[OpSpec]) -> float:
        """A whole network's latency: the sum of its ops' contributions plus the overhead."""
        return float(self.contribution(ops).sum() + self.overhead_ms)

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
        overhead is
        the median of gap + per_op * ops, over every network, or with `near_ms` over the
        `LOCAL_NETWORKS` that F (with its overhead so far) predicts nearest it: a search asks F
        about networks predicted at about its target (the ones it derived and timed among them),
        and there the local level is what counts.
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
        level = gaps + self.per_op_ms * counts
        if near_ms is not None and len(level) > LOCAL_NETWORKS:
            measured = np.array([latency for _, latency in samples])
            predicted = measured - level + self.overhead_ms
            level = level[np.argsort(np.abs(predicted - near_ms))[:LOCAL_NETWORKS]]
        self.overhead_ms = float(np.median(level)) if len(level) else 0.0
        self.meta["overhead_networks"] = len(gaps)
        return self.overhead_ms

    # --- persistence ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        model = self._fitted()
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "device": self.device,
            "overhead_ms": self.overhead_ms,
            "per_op_ms": self.per_op_ms,
            "meta": self.meta,
            "params": {"family": self.family, "families": list(self.families), "seed": self.seed},
            "table": [[op.to_dict(), ms] for op, ms in self.table_.items()],
            "model": model.to_state(),
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
                per_op_ms=state.get("per_op_ms", 0.0),
            )
            predictor.table_ = {OpSpec.from_dict(op): float(ms) for op, ms in state["table"]}
            predictor.model_ = model_from_state(state["model"])
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
