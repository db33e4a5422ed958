"""ProxylessNAS's REINFORCE variant: sample whole networks, reward ACC × (LAT/T)^w.

Latency needs no gradient here, so LAT(m) is F of the sampled network (the table's sum), and the
reward may use any latency model at all. The baseline follows ProxylessNAS's code: it starts at the
first mean reward, then moves toward each new mean by `weight` · (mean − baseline).
"""

from __future__ import annotations

from typing import Any

import torch

from latkit.search.latency import LatencyTable
from latkit.search.mixed_op import frozen_bn_stats
from latkit.search.supernet import SuperNet
from latkit.search.trainer import SearchConfig


def reward(accuracy: float, latency_ms: float, target_ms: float, exponent: float = -0.1) -> float:
    """ACC × (LAT/T)^w; w < 0 favours faster networks (ProxylessNAS: (T/LAT)^0.1)."""
    return accuracy * (latency_ms / target_ms) ** exponent


class MovingAverageBaseline:
    """The variance-reducing baseline subtracted from each reward."""

    def __init__(self, weight: float = 0.99) -> None:
        self.weight = weight
        self.value: float | None = None

    def update(self, mean_reward: float) -> float:
        if self.value is None:
            self.value = mean_reward
        else:
            self.value += self.weight * (mean_reward - self.value)
        return self.value


class ReinforceStep:
    """One update: `rl_batch` sampled networks scored on one validation batch, then Adam on α."""

    def __init__(self, net: SuperNet, table: LatencyTable, config: SearchConfig) -> None:
        self.net, self.table, self.config = net, table, config
        self.optimizer = torch.optim.Adam(
            net.arch_parameters(), lr=config.arch_lr, betas=config.arch_betas
        )
        self.baseline = MovingAverageBaseline(config.rl_baseline_weight)
        self.last_rewards: list[float] = []
        self.last_archs: list[tuple[int, ...]] = []

    def step(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        net, alphas = self.net, self.net.arch_parameters()
        rewards: list[float] = []
        archs: list[tuple[int, ...]] = []
        grads: list[tuple[torch.Tensor, ...]] = []
        for _ in range(self.config.rl_batch):
            net.sample("weights", generator)
            with torch.no_grad(), frozen_bn_stats(net):
                acc = float((net(x).argmax(1) == y).float().mean())
            arch = net.sampled_arch()
            archs.append(arch)
            rewards.append(
                reward(
                    acc, self.table.of_arch(arch), self.config.target_ms, self.config.rl_exponent
                )
            )
            log_prob = sum(
                torch.log_softmax(alpha, dim=0)[index] for alpha, index in zip(alphas, arch)
            )
            grads.append(torch.autograd.grad(-log_prob, alphas))
        mean = sum(rewards) / len(rewards)
        baseline = self.baseline.update(mean)
        for layer, alpha in enumerate(alphas):
            alpha.grad = sum((r - baseline) * g[layer] for r, g in zip(rewards, grads)) / len(
                rewards
            )
        self.optimizer.step()
        self.last_rewards, self.last_archs = rewards, archs
        return -mean

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline.value = state["baseline"]
