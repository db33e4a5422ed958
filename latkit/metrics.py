"""Accuracy metrics for latency predictors: ±5% / ±10% accuracy, RMSPE, Spearman ρ, Kendall τ,
and the coverage of prediction intervals.

Everything that reports predictor quality (fit, validate, benches) calls these, so a figure means
the same thing wherever it is printed. scipy.stats is imported where it is used: it costs a second
of every command's start-up, `--help` included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _arrays(pred: Sequence[float], true: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    if p.shape != t.shape or p.ndim != 1 or len(p) == 0:
        raise ValueError("pred and true must be non-empty 1-d sequences of equal length")
    if np.any(t <= 0):
        raise ValueError("true latencies must be positive")
    return p, t


def within(pred: Sequence[float], true: Sequence[float], tolerance: float) -> float:
    """Share of samples with |pred - true| / true <= tolerance (nn-Meter's ±10% accuracy)."""
    p, t = _arrays(pred, true)
    return float(np.mean(np.abs(p - t) / t <= tolerance + 1e-12))


def rmspe(pred: Sequence[float], true: Sequence[float]) -> float:
    """Root mean squared percentage error, in percent."""
    p, t = _arrays(pred, true)
    return float(np.sqrt(np.mean(((p - t) / t) ** 2)) * 100)


def spearman(pred: Sequence[float], true: Sequence[float]) -> float:
    """Spearman rank correlation; NaN when either side is constant or has one sample."""
    p, t = _arrays(pred, true)
    if len(p) < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(p, t).statistic)


def kendall(pred: Sequence[float], true: Sequence[float]) -> float:
    """Kendall's tau-b: the share of concordant minus discordant pairs, what a search that only
    compares two architectures at a time relies on; NaN as for `spearman`."""
    p, t = _arrays(pred, true)
    if len(p) < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        return float("nan")
    from scipy.stats import kendalltau

    return float(kendalltau(p, t).statistic)


def coverage(low: Sequence[float], high: Sequence[float], true: Sequence[float]) -> float:
    """Share of true values inside [low, high]: what a 90% prediction interval should hit 90%
    of the time."""
    lo, hi = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    t = np.asarray(true, dtype=float)
    if not lo.shape == hi.shape == t.shape or t.ndim != 1 or len(t) == 0:
        raise ValueError("low, high and true must be non-empty 1-d sequences of equal length")
    return float(np.mean((lo <= t) & (t <= hi)))


def report(pred: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """The standard set: ±5%, ±10% accuracy, RMSPE (%), Spearman rho and Kendall tau."""
    return {
        "acc5": within(pred, true, 0.05),
        "acc10": within(pred, true, 0.10),
        "rmspe": rmspe(pred, true),
        "spearman": spearman(pred, true),
        "kendall": kendall(pred, true),
    }
