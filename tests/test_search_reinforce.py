"""REINFORCE: the reward, the moving-average baseline, and the policy-gradient update."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MacsPredictor

from latkit.search.latency import LatencyTable
from latkit.search.reinforce import MovingAverageBaseline, ReinforceStep, reward
from latkit.search.supernet import SuperNet
from latkit.search.trainer import SearchConfig
from latkit.spaces import load_space

SPACE = load_space("proxyless-tiny")


def test_reward_is_accuracy_times_latency_ratio_to_the_power_w():
    assert reward(0.9, 2.0, 1.0, -0.1) == pytest.approx(0.9 * 2.0**-0.1)
    assert reward(0.9, 1.0, 1.0) == pytest.approx(0.9)
    # ProxylessNAS writes it acc * (T / LAT) ** 0.1
    assert reward(0.8, 0.5, 1.0, -0.1) == pytest.approx(0.8 * (1.0 / 0.5) ** 0.1)
    assert reward(0.8, 0.5, 1.0) > reward(0.8, 0.7, 1.0)


def test_baseline_starts_at_the_first_mean_and_moves_by_the_weight():
    baseline = MovingAverageBaseline(weight=0.25)
    assert baseline.update(0.4) == pytest.approx(0.4)
    assert baseline.update(0.8) == pytest.approx(0.4 + 0.25 * 0.4)
    assert baseline.update(0.5) == pytest.approx(0.5 + 0.25 * (0.5 - 0.5))


def test_update_is_the_mean_advantage_times_grad_log_prob():
    torch.manual_seed(0)
    net = SuperNet(SPACE, "single", seed=0)
    table = LatencyTable.from_predictor(MacsPredictor(overhead_ms=0.0), SPACE)
    config = SearchConfig(target_ms=0.05, rl_batch=6, arch_lr=0.01, strategy="reinforce")
    step = ReinforceStep(net, table, config)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
    before = [a.detach().clone() for a in net.arch_parameters()]
    net.train()
    step.step(x, y, g)
    rewards, archs = step.last_rewards, step.last_archs
    assert len(rewards) == 6 and len(archs) == 6
    for r, arch in zip(rewards, archs):
        assert 0 <= r <= (table.of_arch(arch) / 0.05) ** -0.1 + 1e-9
    baseline = float(np.mean(rewards))  # the first update sets the baseline to the mean
    for layer, (alpha, old) in enumerate(zip(net.arch_parameters(), before)):
        p = torch.softmax(old, 0)
        expected = torch.zeros_like(p)
        for r, arch in zip(rewards, archs):
            one_hot = torch.zeros_like(p)
            one_hot[arch[layer]] = 1.0
            expected += (r - baseline) * (p - one_hot)  # ∇(−log p(arch)) times the advantage
        torch.testing.assert_close(alpha.grad, expected / len(rewards), rtol=1e-5, atol=1e-7)
    # a second step moves the baseline toward the new mean
    step.step(x, y, g)
    assert step.baseline.value == pytest.approx(
        baseline + 0.99 * (np.mean(step.last_rewards) - baseline)
    )
