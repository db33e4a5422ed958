"""From architecture probabilities to one network: argmax, the hard budget, net.config JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latkit.errors import LatkitError
from latkit.files import write_json
from latkit.search.latency import LatencyTable
from latkit.spaces import Network


def argmax_arch(probs: Sequence[np.ndarray]) -> tuple[int, ...]:
    return tuple(int(np.argmax(p)) for p in probs)


def project_to_budget(
    probs: Sequence[np.ndarray],
    table: LatencyTable,
    target_ms: float,
    arch: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """The argmax architecture, moved layer by layer to cheaper candidates until F says ≤ T.

    Each move swaps one layer's candidate for a cheaper one. When a single move reaches the
    budget, the one that gives up the least log-probability is taken; otherwise the move with the
    least log-probability lost per ms saved. Log-probabilities add over layers, so this trades the
    architecture's likelihood under the search's distribution as slowly as possible.
    """
    arch = list(arch if arch is not None else argmax_arch(probs))
    costs = [np.asarray(c, dtype=float) for c in table.layers]
    logp = [np.log(np.clip(np.asarray(p, dtype=float), 1e-12, None)) for p in probs]
    latency = table.of_arch(arch)
    while latency > target_ms + 1e-12:
        excess = latency - target_ms
        finishing: list[tuple[float, int, int]] = []
        ratios: list[tuple[float, int, int]] = []
        for layer, current in enumerate(arch):
            for cand in range(len(costs[layer])):
                saved = costs[layer][current] - costs[layer][cand]
                if saved <= 0:
                    continue
                lost = logp[layer][current] - logp[layer][cand]
                if saved >= excess:
                    finishing.append((lost, layer, cand))
                ratios.append((lost / saved, layer, cand))
        if not ratios:
            _, fastest = table.fastest()
            raise LatkitError(
                f"no architecture meets --target-ms {target_ms:g}: the fastest one is predicted "
                f"at {fastest:.4g} ms"
            )
        _, layer, cand = min(finishing) if finishing else min(ratios)
        arch[layer] = cand
        latency = table.of_arch(arch)
    return tuple(arch)


def write_net_config(network: Network, path: Path) -> Path:
    """ProxylessNAS's `net.config` JSON, readable by `Network.load` and by its own tooling."""
    return write_json(path, network.to_config())
