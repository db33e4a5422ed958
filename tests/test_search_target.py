"""Landing on T: the Lagrangian's latency step, its state, and the exact budgeted derivation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import MacsPredictor

from latkit.errors import LatkitError
from latkit.search.export import derive, window
from latkit.search.latency import LatencyTable
from latkit.search.losses import AddLinear, Lagrangian
from latkit.search.supernet import SuperNet
from latkit.search.trainer import GradientStep, SearchConfig
from latkit.spaces import load_space

SPACE = load_space("proxyless-tiny")


TABLE = LatencyTable.from_predictor(MacsPredictor(), SPACE)
FASTEST = TABLE.fastest()[1]
SLOWEST = TABLE.slowest()[1]
#: every architecture of the space (74088) with its latency: the brute-force reference
ALL = np.array(list(itertools.product(*(range(len(c)) for c in TABLE.layers))))
LATENCY = TABLE.fixed_ms + sum(c.double().numpy()[ALL[:, i]] for i, c in enumerate(TABLE.layers))


def uniform_alphas() -> list[torch.Tensor]:
    return [torch.zeros(len(c), requires_grad=True) for c in TABLE.layers]


def expected(alphas) -> float:
    return float(TABLE.expected([a.detach() for a in alphas]))


def one_latency_step(target: float) -> list[torch.Tensor]:
    alphas = uniform_alphas()
    Lagrangian().latency_step(alphas, TABLE, target)
    return [a.detach() for a in alphas]


def test_the_update_follows_the_distance_to_the_target_in_size_and_direction():
    start = expected(uniform_alphas())
    moves = {t: one_latency_step(start * t) for t in (0.8, 0.9, 1.1, 1.2)}
    size = {t: float(torch.cat(m).norm()) for t, m in moves.items()}
    # a tighter target moves α further; T above E[LAT] moves it the other way
    assert size[0.8] > 1.5 * size[0.9] and size[1.2] > 1.5 * size[1.1]
    for tight, loose in ((0.8, 1.2), (0.9, 1.1)):
        assert torch.allclose(
            torch.cat(moves[tight]) / size[tight],
            -torch.cat(moves[loose]) / size[loose],
            atol=1e-5,
        )
    after = {t: expected(m) for t, m in moves.items()}
    assert after[0.8] < after[0.9] < start < after[1.1] < after[1.2]
    # each step removes the share `rate` of the relative error (to first order)
    for t in (0.9, 1.1):
        assert after[t] / (start * t) - 1 == pytest.approx(0.9 * (1 / t - 1), rel=0.05)
    # at the target itself, nothing moves
    assert float(torch.cat(one_latency_step(start)).norm()) == 0.0


def test_add_linear_under_adam_moves_by_lr_whatever_the_target():
    """What the issue measured: ProxylessNAS's latency term sets only the sign under Adam."""
    start = expected(uniform_alphas())
    sizes = []
    for t in (0.5, 0.99):
        alphas = uniform_alphas()
        optimizer = torch.optim.Adam(alphas, lr=0.03, betas=(0.0, 0.999))
        AddLinear()(torch.tensor(1.0), TABLE.expected(alphas), start * t).backward()
        optimizer.step()
        sizes.append(max(float(a.detach().abs().max()) for a in alphas))
    assert sizes == pytest.approx([0.03, 0.03], rel=1e-3)


def run(loss, target: float, steps: int = 150) -> np.ndarray:
    """Arch steps with a cross-entropy stand-in that always prefers the dearest candidates (as
    accuracy tends to), Adam on it, then the loss's own latency step; E[LAT]/T per step."""
    alphas = uniform_alphas()
    optimizer = torch.optim.Adam(alphas, lr=0.03, betas=(0.0, 0.999))
    ratios = []
    for _ in range(steps):
        ce = -sum((torch.softmax(a, 0) * c / c.max()).sum() for a, c in zip(alphas, TABLE.layers))
        optimizer.zero_grad()
        loss(ce, TABLE.expected(alphas), target).backward()
        optimizer.step()
        loss.latency_step(alphas, TABLE, target)
        ratios.append(expected(alphas) / target)
    return np.array(ratios)


@pytest.mark.parametrize("fraction", [0.25, 0.75])
def test_expected_latency_settles_on_the_target_instead_of_passing_through(fraction):
    target = FASTEST + fraction * (SLOWEST - FASTEST)
    ratios = run(Lagrangian(), target)
    assert abs(ratios[-50:] - 1).max() < 0.01  # settled within 1%
    start = expected(uniform_alphas()) / target
    if start > 1:  # coming down from above, it never dives far below
        assert ratios.min() > 0.98
    else:
        assert ratios.max() < 1.03
    # ProxylessNAS's add-linear under the same pull drifts off the target and stays off
    assert abs(run(AddLinear(), target)[-1] - 1) > 0.1


def test_the_multiplier_rises_above_the_aim_falls_below_and_is_saved():
    loss = Lagrangian(aim=0.98)
    alphas = uniform_alphas()
    start = expected(alphas)
    loss.latency_step(alphas, TABLE, start / 0.98 / 1.05)  # E[LAT] 5% above the aim
    assert loss.multiplier > 0
    high = loss.multiplier
    loss.latency_step(alphas, TABLE, start / 0.98 / 0.95)  # below
    assert loss.multiplier < high
    again = Lagrangian(aim=0.98)
    again.load_state_dict(loss.state_dict())
    assert again.multiplier == loss.multiplier


def test_gradient_step_state_round_trips_adam_and_the_multiplier():
    torch.manual_seed(0)
    net = SuperNet(SPACE, "two-path", seed=0)
    config = SearchConfig(target_ms=FASTEST * 1.1, loss="lagrangian", arch_lr=0.03)
    step = GradientStep(net, TABLE, config)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
    net.train()
    step.step(x, y, g)
    state = step.state_dict()
    assert state["loss"]["multiplier"] == step.loss.multiplier
    fresh = GradientStep(SuperNet(SPACE, "two-path", seed=0), TABLE, config)
    fresh.load_state_dict(state)
    assert fresh.loss.multiplier == step.loss.multiplier
    assert fresh.optimizer.state_dict()["state"].keys() == state["optimizer"]["state"].keys()


# --- derivation ---------------------------------------------------------------------------------


def random_probs(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.dirichlet(np.full(len(c), 0.5)) for c in TABLE.layers]


@pytest.mark.parametrize("seed", range(4))
def test_derivation_is_the_most_probable_architecture_in_the_window(seed):
    probs = random_probs(seed)
    logp = sum(np.log(p)[ALL[:, i]] for i, p in enumerate(probs))
    for target in np.linspace(FASTEST * 1.02, SLOWEST * 0.98, 6):
        for hard in (False, True):
            arch = derive(probs, TABLE, float(target), hard=hard)
            low, high = window(float(target), hard)
            inside = (LATENCY >= low) & (LATENCY <= high)
            best = tuple(ALL[np.argmax(np.where(inside, logp, -np.inf))])
            assert arch == best, (target, hard)
            assert low <= TABLE.of_arch(arch) <= high
            if hard:
                assert TABLE.of_arch(arch) <= target


def test_derivation_moves_up_as_well_as_down():
    """Not a walk that only gives latency up: a fast argmax is raised to a loose target."""
    probs = [np.eye(len(c))[int(torch.argmin(c))] * 0.9 + 0.1 / len(c) for c in TABLE.layers]
    argmax = tuple(int(np.argmax(p)) for p in probs)
    target = FASTEST + 0.6 * (SLOWEST - FASTEST)
    arch = derive(probs, TABLE, target)
    assert TABLE.of_arch(argmax) < 0.8 * target
    assert abs(TABLE.of_arch(arch) / target - 1) <= 0.02


def test_derivation_outside_the_range_takes_the_closest():
    probs = random_probs(0)
    assert TABLE.of_arch(derive(probs, TABLE, SLOWEST * 2)) == pytest.approx(SLOWEST)
    assert TABLE.of_arch(derive(probs, TABLE, SLOWEST * 2, hard=True)) == pytest.approx(SLOWEST)
    assert TABLE.of_arch(derive(probs, TABLE, FASTEST * 0.5)) == pytest.approx(FASTEST)
    with pytest.raises(LatkitError, match="fastest"):
        derive(probs, TABLE, FASTEST * 0.9, hard=True)


def test_derivation_with_an_empty_window_takes_the_closest_from_below_when_hard():
    # two layers, latencies 0, 1, 2, 3, 4, 10, 11, ... : nothing within 2% of 6.5
    table = LatencyTable(0.0, (torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, 10.0])))
    probs = [np.full(5, 0.2), np.array([0.5, 0.5])]
    assert table.of_arch(derive(probs, table, 6.5, hard=True)) == 4.0
    assert table.of_arch(derive(probs, table, 8.0)) == 10.0  # closest either side
