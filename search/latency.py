"""Expected latency E[LAT] = fixed ops + Σ_layers Σ_i p_i · F(op_i), differentiable in α.

F is queried once, for every candidate of every layer, when the table is built; a search step only
does a softmax and a dot product per layer. The sum stays a graph of tensors from α to the result,
so the latency term moves α: one public implementation lost that gradient by wrapping the sum in
`torch.tensor(...)`. The costs follow α's device (`to` moves them once, ahead of the search).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.spaces import SearchSpace


class Predictor(Protocol):
    """What the search needs of a latency predictor (see `predictors.LatencyPredictor`)."""

    overhead_ms: float

    def contribution(self, ops: Sequence[OpSpec]) -> np.ndarray: ...


@dataclass(frozen=True)
class LatencyTable:
    """F of every candidate of every layer, plus the fixed ops and the per-network overhead."""

    fixed_ms: float
    layers: tuple[torch.Tensor, ...]

    @classmethod
    def from_predictor(
        cls, predictor: Predictor, space: SearchSpace, batch: int = 1
    ) -> LatencyTable:
        """Ask F once for all ops of `space` (the zero op costs nothing)."""
        head, tail = space.fixed_ops(batch)
        layers = space.layers(batch)
        candidates = [op for layer in layers for op in layer.candidates]
        values = np.asarray(predictor.contribution([*head, *tail, *candidates]), dtype=float)
        if values.shape != (len(head) + len(tail) + len(candidates),):
            raise LatkitError("the latency predictor returned the wrong number of values")
        if not np.all(np.isfinite(values)):
            raise LatkitError("the latency predictor returned a non-finite latency")
        fixed = float(values[: len(head) + len(tail)].sum()) + float(predictor.overhead_ms)
        rest = iter(values[len(head) + len(tail) :])
        tables = []
        for layer in layers:
            row = [(0.0 if op.type == "zero" else v) for op, v in zip(layer.candidates, rest)]
            tables.append(torch.tensor(row, dtype=torch.float32))
        return cls(fixed, tuple(tables))

    def expected(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor:
        """E[LAT] in ms under softmax(α) per layer; a tensor with a gradient to every α."""
        if len(alphas) != len(self.layers):
            raise LatkitError(f"{len(alphas)} logit vectors for {len(self.layers)} layers")
        total = alphas[0].new_tensor(self.fixed_ms)
        for alpha, costs in zip(alphas, self.layers):
            costs = costs.to(alpha.device)
            total = total + (torch.softmax(alpha, dim=0) * costs).sum()
        return total

    def to(self, device: torch.device | str) -> LatencyTable:
        """The same table with its cost tensors on `device`."""
        return LatencyTable(self.fixed_ms, tuple(costs.to(device) for costs in self.layers))

    def of_arch(self, arch: Sequence[int]) -> float:
        """Predicted latency of one architecture: the fixed part plus its chosen candidates."""
        return self.fixed_ms + sum(float(costs[i]) for costs, i in zip(self.layers, arch))

    def fastest(self) -> tuple[tuple[int, ...], float]:
        arch = tuple(int(torch.argmin(costs)) for costs in self.layers)
        return arch, self.of_arch(arch)

    def slowest(self) -> tuple[tuple[int, ...], float]:
        arch = tuple(int(torch.argmax(costs)) for costs in self.layers)
        return arch, self.of_arch(arch)
