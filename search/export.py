"""From architecture probabilities to one network: the budgeted derivation, net.config JSON.

The derived architecture is the most probable one under the search's distribution (the largest
Σ log p over layers) among those whose predicted latency lies in a window at the target:
[T·(1−2w), T] with a hard budget, [T·(1−w), T·(1+w)] without. It is found by dynamic programming
over layers on a latency grid of 1/`GRID` of the window's width, and every candidate is checked
against its exact latency, not its grid cell. Where no architecture lies in the window, the
closest one is taken (from below with a hard budget).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.search.latency import LatencyTable
from latkit.spaces import Network

#: half-width w of the derivation window, as a share of T
WINDOW = 0.02
#: grid cells per window width
GRID = 1000
#: the most grid cells the programme may use (bounds memory when T is far above the fastest)
MAX_CELLS = 1_000_000


def argmax_arch(probs: Sequence[np.ndarray]) -> tuple[int, ...]:
    return tuple(int(np.argmax(p)) for p in probs)


def window(target_ms: float, hard: bool, width: float = WINDOW) -> tuple[float, float]:
    """The predicted-latency window the derivation aims for (see the module doc)."""
    if not (math.isfinite(target_ms) and target_ms > 0):
        raise LatkitError(f"the latency target must be a finite number > 0, got {target_ms} ms")
    if hard:
        return target_ms * (1 - 2 * width), target_ms
    return target_ms * (1 - width), target_ms * (1 + width)


class _Programme:
    """Σ log p maximised per latency cell, layer by layer, with the choices kept for backtracking."""

    def __init__(
        self, logp: list[np.ndarray], costs: list[np.ndarray], base: float, top: float, cell: float
    ) -> None:
        self.costs, self.base = costs, base
        cell = max(cell, (top - base) / MAX_CELLS)
        n = int(np.floor((top - base) / cell)) + 1
        self.shifts = [np.rint((c - c.min()) / cell).astype(np.int64) for c in costs]
        best = np.full(n, -np.inf)
        best[0] = 0.0
        self.choices = np.zeros((len(costs), n), dtype=np.int16)
        for layer, (lp, shift) in enumerate(zip(logp, self.shifts)):
            new = np.full(n, -np.inf)
            for i, (s, value) in enumerate(zip(shift, lp)):
                if s >= n:
                    continue
                moved = np.full(n, -np.inf)
                moved[s:] = best[: n - s] + value
                better = moved > new
                new[better] = moved[better]
                self.choices[layer, better] = i
            best = new
        self.score = best
        self.reached = np.flatnonzero(np.isfinite(best))
        self.archs = self._backtrack(self.reached)
        self.latency = base + sum(c[a] - c.min() for c, a in zip(costs, self.archs.T))

    def _backtrack(self, cells: np.ndarray) -> np.ndarray:
        arch = np.zeros((len(cells), len(self.costs)), dtype=np.int64)
        cells = cells.copy()
        for layer in range(len(self.costs) - 1, -1, -1):
            chosen = self.choices[layer, cells].astype(np.int64)
            arch[:, layer] = chosen
            cells -= self.shifts[layer][chosen]
        return arch

    def best_in(self, low: float, high: float) -> tuple[int, ...] | None:
        """The most probable reached architecture with exact latency in [low, high]."""
        inside = (self.latency >= low - 1e-12) & (self.latency <= high + 1e-12)
        if not inside.any():
            return None
        scores = np.where(inside, self.score[self.reached], -np.inf)
        return tuple(int(i) for i in self.archs[int(np.argmax(scores))])

    def closest(self, target: float, below: bool) -> tuple[int, ...] | None:
        """The reached architecture closest to `target` (only ≤ target if `below`), the most
        probable among equally close ones."""
        gap = np.abs(self.latency - target)
        if below:
            gap = np.where(self.latency <= target + 1e-12, gap, np.inf)
        if not np.isfinite(gap).any():
            return None
        nearest = np.isclose(gap, gap.min(), rtol=0, atol=1e-12)
        scores = np.where(nearest, self.score[self.reached], -np.inf)
        return tuple(int(i) for i in self.archs[int(np.argmax(scores))])


def derive(
    probs: Sequence[np.ndarray],
    table: LatencyTable,
    target_ms: float,
    *,
    hard: bool = False,
    width: float = WINDOW,
) -> tuple[int, ...]:
    """The most probable architecture whose predicted latency lies in the window at `target_ms`
    (see the module doc); with a hard budget and no architecture ≤ T, an error naming the fastest."""
    low, high = window(target_ms, hard, width)
    costs = [np.asarray(c, dtype=float) for c in table.layers]
    if len(probs) != len(costs):
        raise LatkitError(f"{len(probs)} probability vectors for {len(costs)} layers")
    logp = [np.log(np.clip(np.asarray(p, dtype=float), 1e-12, None)) for p in probs]
    base = table.fixed_ms + sum(float(c.min()) for c in costs)
    slowest = table.fixed_ms + sum(float(c.max()) for c in costs)
    if hard and base > target_ms + 1e-12:
        raise LatkitError(
            f"no architecture meets --target-ms {target_ms:g}: the fastest one is predicted at "
            f"{base:.4g} ms"
        )
    cell = (high - low) / GRID
    programme = _Programme(logp, costs, base, max(base, min(high, slowest)), cell)
    found = programme.best_in(low, high)
    if found is not None:
        return found
    if not hard and target_ms < slowest:
        programme = _Programme(logp, costs, base, slowest, cell)
    found = programme.closest(target_ms, below=hard)
    return found if found is not None else table.fastest()[0]


def write_net_config(network: Network, path: Path) -> Path:
    """ProxylessNAS's `net.config` JSON, readable by `Network.load` and by its own tooling."""
    return write_json(path, network.to_config())
