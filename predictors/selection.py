"""Which model family answers for ops the table lacks, chosen on the rows F is fitted on, and
the held-out residuals that calibrate F's op intervals.

Two kinds of unmeasured op reach the model: ones inside the profiled range (an op of a space
profiled in part, another resolution between measured ones) and ones outside it (wider, larger
inputs, larger kernels, a type never timed). Families rank differently on the two (trees
interpolate well and cannot extrapolate; the cost model extrapolates), so `select` keeps one
family per kind and `OpRange` tells the two kinds apart at prediction time.

Every registered family is compared. Inside: the best score on random folds, where the score is
the ±10% accuracy with the mean relative error (capped at 100%) breaking near-ties: the metric F
is judged by, made smooth enough to rank on a few dozen rows. Outside: the lowest mean RMSPE over
the extrapolation axes (`AXES`: widest, largest inputs, largest kernels, each held out in turn);
how far off an extrapolation lands is what tells families apart there. Each axis also keeps its
own best family, which answers for ops outside the range along that axis (`OpRange.axis`): a
family can extrapolate well to larger inputs and badly to wider ops. A family that is flat
outside its training range (`Family.extrapolates` false: trees) is never chosen to answer there.

The residuals are honest, as split-conformal intervals need: each fold's (or axis's) residuals
come from a family fitted without those rows and chosen on the other folds' (axes') scores
alone, so no residual was used to fit or to choose the model that made it (an axis's own family
is chosen on its own rows, so its residuals come from the family the other axes choose). An op
held out on several axes counts once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latkit import metrics
from latkit.ops import OpSpec
from latkit.predictors.intervals import log_residuals
from latkit.predictors.models import MODELS, make_model

#: with fewer rows than this, cross-validation says nothing: the cost model is used as is
MIN_ROWS_TO_SELECT = 10
FOLDS = 5
#: the share of rows each extrapolation axis holds out (its largest values), at least
EXTRAP_FRACTION = 0.2
#: an axis whose largest values cover more than this share is not held out (no range left)
EXTRAP_MAX_FRACTION = 0.5
#: what "outside the range" is scored along: the op's size on each axis, then its MACs
AXES: dict[str, Callable[[OpSpec], tuple[float, float]]] = {
    "width": lambda op: (max(op.cin, op.cout), op.macs),
    "input": lambda op: (op.input_hw, op.macs),
    "kernel": lambda op: (op.kernel, op.macs),
}
#: how much a mean relative error of 100% weighs against the ±10% accuracy (1 = all ops)
ERROR_WEIGHT = 0.1
#: the op fields whose fitted range decides whether an op is inside it
RANGE_FIELDS: tuple[str, ...] = ("input_hw", "cin", "cout", "mid", "kernel", "macs")
#: which of those fields put an op outside the range along each axis
AXIS_FIELDS: dict[str, frozenset[str]] = {
    "width": frozenset({"cin", "cout", "mid"}),
    "input": frozenset({"input_hw"}),
    "kernel": frozenset({"kernel"}),
}
#: the family that answers outside the range when the one asked for cannot extrapolate
EXTRAP_FALLBACK = "additive"

Split = tuple[np.ndarray, np.ndarray]


def registered_families() -> tuple[str, ...]:
    """Every family `auto` compares: all that are registered."""
    return tuple(str(name) for name in MODELS.names())


def random_splits(n: int, folds: int, seed: int) -> list[Split]:
    order = np.random.default_rng(seed).permutation(n)
    return [(np.setdiff1d(order, part), part) for part in np.array_split(order, folds)]


def axis_splits(ops: Sequence[OpSpec], fraction: float = EXTRAP_FRACTION) -> dict[str, Split]:
    """Per axis, the ops at its largest values held out: whole values at a time (all the
    kernel-7 ops, not some), the fewest values that reach `fraction` of the rows. An axis with
    one value, or whose largest values cover over `EXTRAP_MAX_FRACTION`, is left out."""
    out = {}
    for axis, key in AXES.items():
        primary = np.array([key(op)[0] for op in ops], dtype=float)
        for value in np.unique(primary)[::-1][:-1]:
            held = primary >= value
            if held.mean() >= fraction:
                break
        else:
            continue
        if held.mean() <= EXTRAP_MAX_FRACTION:
            out[axis] = (np.flatnonzero(~held), np.flatnonzero(held))
    return out


def score(pred: Sequence[float], true: Sequence[float]) -> float:
    """Lower is better: the share outside ±10%, plus the capped mean relative error / 10."""
    p, t = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    error = np.minimum(np.abs(p - t) / t, 1.0)
    return float(1.0 - metrics.within(p, t, 0.10) + ERROR_WEIGHT * error.mean())


def extrapolates(family: str) -> bool:
    return bool(MODELS.get(family).extrapolates)


@dataclass(frozen=True)
class Selection:
    """The families `select` kept, every family's scores, and honest held-out residuals
    (|log| ratios) inside the range and outside it, which calibrate F's intervals."""

    family: str
    extrap_family: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    extrap_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    axis_families: dict[str, str] = field(default_factory=dict)


class _Trials:
    """Every family's held-out predictions on the random folds and the extrapolation axes."""

    def __init__(self, ops: Sequence[OpSpec], y: np.ndarray, families: Sequence[str], seed: int):
        self.ops, self.y, self.seed = list(ops), y, seed
        self.families = tuple(families)
        self.outside = tuple(f for f in self.families if extrapolates(f)) or (EXTRAP_FALLBACK,)
        self.folds = random_splits(len(ops), FOLDS, seed)
        self.axes = axis_splits(ops)
        self.inside = {f: [self._held_out(f, s) for s in self.folds] for f in self.families}
        self.wide = {
            f: {a: self._held_out(f, s) for a, s in self.axes.items()} for f in self.outside
        }

    def _held_out(self, family: str, split: Split) -> np.ndarray:
        train, test = split
        model = make_model(family, self.seed).fit([self.ops[i] for i in train], self.y[train])
        return model.predict([self.ops[i] for i in test])

    def fold_score(self, family: str, folds: Sequence[int]) -> float:
        test = np.concatenate([self.folds[k][1] for k in folds])
        guess = np.concatenate([self.inside[family][k] for k in folds])
        return score(guess, self.y[test])

    def axis_rmspe(self, family: str, axes: Sequence[str]) -> float:
        if not axes:
            return 0.0
        return float(
            np.mean([metrics.rmspe(self.wide[family][a], self.y[self.axes[a][1]]) for a in axes])
        )

    def scores(self) -> dict[str, dict[str, float]]:
        out = {}
        for f in self.families:
            guess = np.zeros(len(self.y))
            for (_, test), values in zip(self.folds, self.inside[f]):
                guess[test] = values
            row = {
                "cv_acc10": metrics.within(guess, self.y, 0.10),
                "cv_rmspe": metrics.rmspe(guess, self.y),
                "cv_score": score(guess, self.y),
            }
            for a in self.wide.get(f, {}):
                row[f"extrap_{a}_rmspe"] = metrics.rmspe(self.wide[f][a], self.y[self.axes[a][1]])
            out[f] = row
        return out

    def best_inside(self, folds: Sequence[int]) -> str:
        return min(self.families, key=lambda f: self.fold_score(f, folds))

    def best_outside(self, axes: Sequence[str]) -> str:
        return min(self.outside, key=lambda f: self.axis_rmspe(f, axes))

    def inside_residuals(self) -> np.ndarray:
        """Fold k's residuals, of the family chosen on the other folds' scores."""
        out = np.zeros(len(self.y))
        for k, (_, test) in enumerate(self.folds):
            others = [j for j in range(len(self.folds)) if j != k]
            out[test] = log_residuals(self.inside[self.best_inside(others)][k], self.y[test])
        return out

    def outside_residuals(self) -> np.ndarray:
        """Each axis's residuals, of the family chosen on the other axes' scores; an op held
        out on several axes counts once (on the first)."""
        seen: set[int] = set()
        out = []
        for axis, (_, test) in self.axes.items():
            family = self.best_outside([a for a in self.axes if a != axis])
            residuals = log_residuals(self.wide[family][axis], self.y[test])
            out.extend(r for i, r in zip(test, residuals) if i not in seen)
            seen.update(test.tolist())
        return np.array(out)


def select(
    ops: Sequence[OpSpec],
    latencies_ms: np.ndarray,
    families: Sequence[str] | None = None,
    seed: int = 0,
) -> Selection:
    """Score `families` (default: every registered one) on the same splits of (ops,
    latencies) and keep the best per kind. Below `MIN_ROWS_TO_SELECT` rows nothing is scored:
    the cost model, which needs the fewest rows, answers (or the one family asked for, inside
    the range)."""
    families = tuple(families or registered_families())
    y = np.asarray(latencies_ms, dtype=float)
    if len(ops) < MIN_ROWS_TO_SELECT:
        inside = families[0] if len(families) == 1 else EXTRAP_FALLBACK
        return Selection(inside, inside if extrapolates(inside) else EXTRAP_FALLBACK)
    trials = _Trials(ops, y, families, seed)
    all_folds = list(range(FOLDS))
    return Selection(
        trials.best_inside(all_folds),
        trials.best_outside(list(trials.axes)),
        trials.scores(),
        trials.inside_residuals(),
        trials.outside_residuals(),
        {axis: trials.best_outside([axis]) for axis in trials.axes},
    )


def _values(op: OpSpec) -> list[float]:
    return [float(op.mid if name == "mid" else getattr(op, name)) for name in RANGE_FIELDS]


#: axes along which an op is of something F never measured at all: no residual calibrates them
NOVEL_AXES: frozenset[str] = frozenset({"type", "kind"})


def _kind(op: OpSpec) -> list[Any]:
    """What no size can stand in for: the activation and the squeeze-excite."""
    return [op.act, bool(op.se), op.se_style]


@dataclass(frozen=True)
class OpRange:
    """The fitted range of each op type: [min, max] of `RANGE_FIELDS` over its rows, and the
    kinds (`_kind`) its rows were of."""

    bounds: dict[str, tuple[list[float], list[float]]]
    kinds: dict[str, list[list[Any]]]

    @classmethod
    def of(cls, ops: Sequence[OpSpec]) -> OpRange:
        by_type: dict[str, list[list[float]]] = {}
        kinds: dict[str, list[list[Any]]] = {}
        for op in ops:
            by_type.setdefault(op.type, []).append(_values(op))
            seen = kinds.setdefault(op.type, [])
            if _kind(op) not in seen:
                seen.append(_kind(op))
        return cls(
            {
                t: (np.min(rows, axis=0).tolist(), np.max(rows, axis=0).tolist())
                for t, rows in by_type.items()
            },
            kinds,
        )

    def inside(self, op: OpSpec) -> bool:
        """Whether every field of `op` lies within what its type was fitted on."""
        return self.axis(op) is None

    def axis(self, op: OpSpec) -> str | None:
        """Along which extrapolation axis `op` leaves its type's fitted range (`AXES`, in
        their order; "type" for a type never fitted, "kind" for an activation or
        squeeze-excite its type was never fitted with); None inside it."""
        if op.type not in self.bounds:
            return "type"
        if _kind(op) not in self.kinds[op.type]:
            return "kind"
        low, high = self.bounds[op.type]
        out = {f for f, lo, v, hi in zip(RANGE_FIELDS, low, _values(op), high) if not lo <= v <= hi}
        if not out:
            return None
        return next((axis for axis in AXES if out & AXIS_FIELDS[axis]), "width")

    def to_state(self) -> dict[str, Any]:
        return {"fields": list(RANGE_FIELDS), "bounds": self.bounds, "kinds": self.kinds}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OpRange:
        bounds = {t: (list(lo), list(hi)) for t, (lo, hi) in state["bounds"].items()}
        return cls(bounds, state["kinds"])
