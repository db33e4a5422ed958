"""Which model family answers for ops the table lacks, chosen on the rows F is fitted on.

Two kinds of unmeasured op reach the model: ones inside the profiled range (an op of a space
profiled in part, another resolution between measured ones) and ones outside it (wider, larger,
of a type never timed). Families rank differently on the two (trees interpolate well and cannot
extrapolate; the cost model extrapolates), so `select` keeps one family per kind and `OpRange`
tells the two kinds apart at prediction time.

Inside: the family with the best score on random folds, where the score is the ±10% accuracy
with the mean relative error (capped at 100%) breaking near-ties: the metric F is judged by,
made smooth enough to rank on a few dozen rows. Outside: the family with the lowest RMSPE when
the widest fifth is held out; a few held-out rows are usually all within ±10% for every
sensible family, and how far off an extrapolation lands is what tells families apart there.
The extrapolation interval pools the kept family's residuals with the widest fifth, three
tenths and two fifths held out, since real queries can lie further out than the widest fifth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latkit import metrics
from latkit.ops import OpSpec
from latkit.predictors.intervals import log_residuals
from latkit.predictors.models import make_model

#: with fewer rows than this, cross-validation says nothing: the cost model is used as is
MIN_ROWS_TO_SELECT = 10
FOLDS = 5
#: the widest shares of the rows held out to judge extrapolation (the first one selects)
EXTRAP_FRACTIONS = (0.2, 0.3, 0.4)
#: how much a mean relative error of 100% weighs against the ±10% accuracy (1 = all ops)
ERROR_WEIGHT = 0.1
#: the op fields whose fitted range decides whether an op is inside it
RANGE_FIELDS: tuple[str, ...] = ("input_hw", "cin", "cout", "mid", "kernel", "macs")

Split = tuple[np.ndarray, np.ndarray]


def selection_splits(
    ops: Sequence[OpSpec], folds: int, seed: int, fractions: Sequence[float] = EXTRAP_FRACTIONS
) -> tuple[list[Split], list[Split]]:
    """Random folds, and one extrapolation split per fraction: the widest ops held out."""
    order = np.random.default_rng(seed).permutation(len(ops))
    random = [(np.setdiff1d(order, part), part) for part in np.array_split(order, folds)]
    by_width = np.array(sorted(range(len(ops)), key=lambda i: (ops[i].cin, ops[i].macs)))
    wide = []
    for fraction in fractions:
        n_wide = max(1, int(len(ops) * fraction))
        wide.append((by_width[:-n_wide], by_width[-n_wide:]))
    return random, wide


def score(pred: Sequence[float], true: Sequence[float]) -> float:
    """Lower is better: the share outside ±10%, plus the capped mean relative error / 10."""
    p, t = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    error = np.minimum(np.abs(p - t) / t, 1.0)
    return float(1.0 - metrics.within(p, t, 0.10) + ERROR_WEIGHT * error.mean())


@dataclass(frozen=True)
class Selection:
    """The families `select` kept, every family's scores, and the kept families' held-out
    residuals (|log| ratios), which calibrate F's intervals."""

    family: str
    extrap_family: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    extrap_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))


def select(
    ops: Sequence[OpSpec], latencies_ms: np.ndarray, families: Sequence[str], seed: int = 0
) -> Selection:
    """Score every family on the same splits of (ops, latencies) and keep the best per kind.
    Below `MIN_ROWS_TO_SELECT` rows nothing is scored: the cost model, which needs the fewest
    rows, answers (or the one family asked for)."""
    y = np.asarray(latencies_ms, dtype=float)
    if len(ops) < MIN_ROWS_TO_SELECT:
        fallback = families[0] if len(families) == 1 else "additive"
        return Selection(fallback, fallback)
    random, wide = selection_splits(ops, FOLDS, seed)

    def fitted(family: str, rows: np.ndarray):
        return make_model(family, seed).fit([ops[i] for i in rows], y[rows])

    def extrapolated(family: str, split: Split) -> np.ndarray:
        return fitted(family, split[0]).predict([ops[i] for i in split[1]])

    scores: dict[str, dict[str, float]] = {}
    guesses, wides = {}, {}
    (wide_train, wide_test), *further = wide
    for family in families:
        guess = np.zeros(len(ops))
        for train, test in random:
            guess[test] = fitted(family, train).predict([ops[i] for i in test])
        guesses[family] = guess
        wides[family] = extrapolated(family, (wide_train, wide_test))
        scores[family] = {
            "cv_acc10": metrics.within(guess, y, 0.10),
            "cv_rmspe": metrics.rmspe(guess, y),
            "cv_score": score(guess, y),
            "extrap_acc10": metrics.within(wides[family], y[wide_test], 0.10),
            "extrap_rmspe": metrics.rmspe(wides[family], y[wide_test]),
        }
    inside = min(families, key=lambda f: scores[f]["cv_score"])
    outside = min(families, key=lambda f: scores[f]["extrap_rmspe"])
    extrap_residuals = [log_residuals(wides[outside], y[wide_test])]
    for split in further:
        extrap_residuals.append(log_residuals(extrapolated(outside, split), y[split[1]]))
    return Selection(
        inside,
        outside,
        scores,
        log_residuals(guesses[inside], y),
        np.concatenate(extrap_residuals),
    )


def _values(op: OpSpec) -> list[float]:
    return [float(op.mid if name == "mid" else getattr(op, name)) for name in RANGE_FIELDS]


@dataclass(frozen=True)
class OpRange:
    """The fitted range of each op type: [min, max] of `RANGE_FIELDS` over its rows."""

    bounds: dict[str, tuple[list[float], list[float]]]

    @classmethod
    def of(cls, ops: Sequence[OpSpec]) -> OpRange:
        by_type: dict[str, list[list[float]]] = {}
        for op in ops:
            by_type.setdefault(op.type, []).append(_values(op))
        return cls(
            {
                t: (np.min(rows, axis=0).tolist(), np.max(rows, axis=0).tolist())
                for t, rows in by_type.items()
            }
        )

    def inside(self, op: OpSpec) -> bool:
        """Whether every field of `op` lies within what its type was fitted on."""
        if op.type not in self.bounds:
            return False
        low, high = self.bounds[op.type]
        return all(lo <= v <= hi for lo, v, hi in zip(low, _values(op), high))

    def to_state(self) -> dict[str, Any]:
        return {"fields": list(RANGE_FIELDS), "bounds": self.bounds}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OpRange:
        return cls({t: (list(lo), list(hi)) for t, (lo, hi) in state["bounds"].items()})
