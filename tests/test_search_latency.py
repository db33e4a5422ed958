"""Expected latency through autograd, ProxylessNAS's losses, and net.config export."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import MacsPredictor

from latkit.errors import LatkitError
from latkit.search.export import write_net_config
from latkit.search.latency import LatencyTable
from latkit.search.losses import LOSSES, AddLinear, Lagrangian, MulLog, get_loss
from latkit.spaces import Network, load_space

SPACE = load_space("proxyless-tiny")


def test_table_asks_f_once_and_matches_whole_network_predictions():
    predictor = MacsPredictor()
    table = LatencyTable.from_predictor(predictor, SPACE)
    assert predictor.calls == 1
    for layer, costs in zip(SPACE.layers(), table.layers):
        for op, cost in zip(layer.candidates, costs):
            assert (float(cost) == 0.0) == (op.type == "zero")
    for arch, network in SPACE.sample_networks(5, seed=3):
        assert table.of_arch(arch) == pytest.approx(predictor.predict_network(network.ops))
    fastest, fast_ms = table.fastest()
    slowest, slow_ms = table.slowest()
    assert fast_ms < slow_ms
    assert all(table.layers[i][a] == table.layers[i].min() for i, a in enumerate(fastest))


def test_expected_latency_is_the_probability_weighted_sum():
    table = LatencyTable.from_predictor(MacsPredictor(), SPACE)
    g = torch.Generator().manual_seed(0)
    alphas = [torch.randn(len(c), generator=g) for c in table.layers]
    expected = table.expected(alphas)
    manual = table.fixed_ms + sum(
        float((torch.softmax(a, 0) * c).sum()) for a, c in zip(alphas, table.layers)
    )
    assert float(expected) == pytest.approx(manual, rel=1e-6)
    one_hot = [torch.full((len(c),), -1e4) for c in table.layers]
    for a in one_hot:
        a[0] = 0.0
    assert float(table.expected(one_hot)) == pytest.approx(table.of_arch([0] * 6), rel=1e-6)


def test_latency_gradient_is_nonzero_with_the_right_sign():
    table = LatencyTable.from_predictor(MacsPredictor(), SPACE)
    alphas = [torch.zeros(len(c), requires_grad=True) for c in table.layers]
    expected = table.expected(alphas)
    assert expected.requires_grad and expected.grad_fn is not None
    expected.backward()
    for alpha, costs in zip(alphas, table.layers):
        p = torch.softmax(alpha.detach(), 0)
        mean = float((p * costs).sum())
        # ∂E/∂α_i = p_i (F_i − E_layer): up for ops dearer than the layer's mean, down for cheaper
        torch.testing.assert_close(alpha.grad, p * (costs - mean))
        assert torch.all(torch.sign(alpha.grad) == torch.sign(costs - mean))
        assert alpha.grad.abs().max() > 0
    # the bug the design warns about: the sum re-wrapped as a new tensor has no path back to α
    for alpha in alphas:
        alpha.grad = None
    wrapped = torch.tensor(table.expected(alphas).item(), requires_grad=True)
    AddLinear()(torch.tensor(1.0), wrapped, 0.1).backward()
    assert all(alpha.grad is None for alpha in alphas)


def test_the_latency_term_alone_moves_alpha_to_cheaper_ops():
    table = LatencyTable.from_predictor(MacsPredictor(), SPACE)
    alphas = [torch.zeros(len(c), requires_grad=True) for c in table.layers]
    optimizer = torch.optim.Adam(alphas, lr=0.05, betas=(0.0, 0.999))
    ce = torch.tensor(1.0)  # constant cross entropy: only latency can move α
    loss_fn = AddLinear()
    start = table.expected(alphas).item()
    for _ in range(60):
        optimizer.zero_grad()
        loss_fn(ce, table.expected(alphas), 0.1).backward()
        optimizer.step()
    assert table.expected(alphas).item() < 0.8 * start
    for alpha, costs in zip(alphas, table.layers):
        p = torch.softmax(alpha.detach(), 0)
        assert int(torch.argmax(p)) == int(torch.argmin(costs))
        assert float(p[int(torch.argmax(costs))]) < 1 / len(costs)


# --- losses -------------------------------------------------------------------------------------


def test_mul_log_is_proxylessnas_formula_at_its_80_ms_target():
    ce, lat = torch.tensor(1.7), torch.tensor(95.0)
    value = MulLog()(ce, lat, 80.0)
    paper = 0.2 * 1.7 * (math.log(95.0) / math.log(80.0)) ** 0.3
    assert float(value) == pytest.approx(paper, rel=1e-6)


def test_mul_log_below_one_millisecond_uses_units_of_t_over_80():
    ce, lat, target = torch.tensor(0.9), torch.tensor(0.3), 0.25
    unit = target / 80
    expected = 0.2 * 0.9 * (math.log(0.3 / unit) / math.log(80.0)) ** 0.3
    assert float(MulLog()(ce, lat, target)) == pytest.approx(expected, rel=1e-6)
    # slower than the target costs more than faster, as at 80 ms
    assert float(MulLog()(ce, torch.tensor(0.2), target)) < float(MulLog()(ce, lat, target))


def test_add_linear_formula_and_both_losses_keep_the_latency_gradient():
    ce, target = torch.tensor(2.0), 0.2
    lat = torch.tensor(0.26, requires_grad=True)
    value = AddLinear()(ce, lat, target)
    assert value.item() == pytest.approx(2.0 + 0.1 * (0.26 - 0.2) / 0.2, rel=1e-6)
    value.backward()
    assert float(lat.grad) == pytest.approx(0.1 / 0.2)
    lat.grad = None
    MulLog()(ce, lat, target).backward()
    assert float(lat.grad) > 0


def test_mul_log_below_t_over_80_stays_finite_and_stops_pulling():
    target = 0.2
    lat = torch.tensor(target / 100, requires_grad=True)  # below T/80: log of a ratio < 1
    value = MulLog()(torch.tensor(1.3), lat, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(lat.grad)
    assert float(lat.grad) == 0.0  # nothing left to push down


def test_loss_registry():
    assert set(LOSSES) == {"lagrangian", "mul-log", "add-linear"}
    assert isinstance(get_loss("mul-log"), MulLog)
    assert isinstance(get_loss("lagrangian", aim=0.98), Lagrangian)
    with pytest.raises(LatkitError, match="not one of"):
        get_loss("l2")
    with pytest.raises(LatkitError, match="positive"):
        AddLinear()(torch.tensor(1.0), torch.tensor(1.0), 0.0)
    with pytest.raises(LatkitError, match="rate"):
        get_loss("lagrangian", rate=2.0)
    # ProxylessNAS's losses keep nothing between steps
    assert get_loss("add-linear").state_dict() == {} and get_loss("mul-log").state_dict() == {}


# --- net.config -----------------------------------------------------------------------------------


def test_net_config_round_trips(tmp_path):
    arch = (5, 6, 0, 3, 2, 6)
    network = SPACE.network(arch, name="found")
    path = write_net_config(network, tmp_path / "net.config")
    config = json.loads(path.read_text())
    assert config["name"] == "ProxylessNASNets" and len(config["blocks"]) == 7
    loaded = Network.load(path)
    assert loaded.ops == network.ops
    assert SPACE.arch_of(loaded) == arch
