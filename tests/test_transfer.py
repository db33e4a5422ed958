"""Few-shot transfer (`latkit.predictors.transfer`) on devices profiled here for real.

Two runtimes of this CPU (onnxruntime and torch eager) are profiled on proxyless-tiny with a
quick plan; their op-table F are the sources. A target that is a known mix of them checks that
the fit recovers it, per op as well as per network; the rest checks the refusals, the honesty
of the few-network interval and the choice of networks.
"""

from __future__ import annotations

import numpy as np
import pytest

from latkit.devices import DeviceConfig, Timing
from latkit.errors import LatkitError
from latkit.predictors import LatencyPredictor
from latkit.predictors.transfer import (
    MIN_TRANSFER_NETWORKS,
    Source,
    fit_transfer,
    pick_networks,
)
from latkit.profilers import get_profiler
from latkit.profilers.session import profile_ops
from latkit.spaces import load_space
from latkit.store import MeasurementStore

SPACE = load_space("proxyless-tiny")
QUICK = Timing(warmup=2, runs=5, rounds=2, max_cv=0.5)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Source]:
    """onnxruntime and torch eager, each profiled on every op of proxyless-tiny."""
    out = []
    path = tmp_path_factory.mktemp("transfer") / "store.sqlite"
    with MeasurementStore(path) as store:
        for runtime in ("onnxruntime", "torch"):
            config = DeviceConfig(name=runtime, kind="cpu", runtime=runtime, timing=QUICK)
            profiler = get_profiler(config)
            try:
                profile_ops(profiler, SPACE.distinct_ops(), store)
            finally:
                profiler.close()
            frame = store.dataframe(runtime)
            ops = [op for op in SPACE.distinct_ops() if op.type != "zero"]
            table = dict(zip(frame["key"], frame["median_ms"]))
            y = [table[op.key] for op in ops]
            out.append(Source(runtime, LatencyPredictor(seed=0, device=runtime).fit(ops, y)))
    return out


def mixed(sources: list[Source], n: int, seed: int = 3) -> list[tuple[tuple, float]]:
    """Networks timed on a device that is exactly 0.6 onnxruntime + 1.5 torch + 0.02 ms."""
    networks = [net.ops for _, net in SPACE.sample_networks(n, seed=seed)]
    x = np.column_stack([s.price(networks) for s in sources])
    return list(zip(networks, x @ [0.6, 1.5] + 0.02))


def test_a_known_mix_is_recovered_per_network_and_per_op(sources, tmp_path):
    train, test = mixed(sources, 12), mixed(sources, 30, seed=4)
    predictor, report = fit_transfer(train, sources, device="new")
    for ops, truth in test:
        assert predictor.predict_network(ops) == pytest.approx(truth, rel=1e-6)
        per_op = predictor.predict(ops).sum() + predictor.overhead_ms
        assert per_op == pytest.approx(truth, rel=1e-6)
    assert report.held_out["acc5"] == 1.0
    assert report.model == "mix of 2 devices with its own overhead"
    x = np.column_stack([s.price([ops for ops, _ in train]) for s in sources])
    parts = (x * [0.6, 1.5]).sum(axis=0)
    expected = parts / parts.sum()
    assert [report.shares[s.name] for s in sources] == pytest.approx(expected, rel=1e-6)
    loaded = LatencyPredictor.load(predictor.save(tmp_path / "p.json"))
    ops = test[0][0]
    assert loaded.predict_network(ops) == pytest.approx(predictor.predict_network(ops))


def test_accuracy_and_interval_are_of_networks_left_out(sources):
    """A single source off by noise: the reported leave-one-out error is not the fit's own."""
    rng = np.random.default_rng(0)
    networks = [net.ops for _, net in SPACE.sample_networks(15, seed=5)]
    truth = sources[0].price(networks) * 2.0 * np.exp(rng.normal(0, 0.08, len(networks)))
    predictor, report = fit_transfer(list(zip(networks, truth)), sources[:1])
    fitted = np.array([predictor.predict_network(ops) for ops in networks])
    own_error = np.sqrt(np.mean(np.log(fitted / truth) ** 2))
    assert report.held_out["rmspe"] / 100 > own_error
    assert predictor.network_interval_.finite
    assert 0.0 < report.held_out["coverage"] <= 1.0


def test_few_networks_give_an_unbounded_interval_and_say_so(sources):
    predictor, report = fit_transfer(mixed(sources, 5), sources)
    answer = predictor.network_answer(mixed(sources, 1, seed=9)[0][0])
    assert answer.high_ms == np.inf
    assert any("unbounded" in note for note in report.notes)


def test_the_fewest_networks_fit(sources):
    predictor, report = fit_transfer(mixed(sources, MIN_TRANSFER_NETWORKS), sources)
    assert report.n_networks == MIN_TRANSFER_NETWORKS and report.shares
    assert predictor.predict_network(mixed(sources, 1, seed=9)[0][0]) > 0


def test_too_few_networks_or_no_sources_are_refused(sources):
    with pytest.raises(LatkitError, match=f"at least {MIN_TRANSFER_NETWORKS} timed networks"):
        fit_transfer(mixed(sources, MIN_TRANSFER_NETWORKS - 1), sources)
    with pytest.raises(LatkitError, match="found none"):
        fit_transfer(mixed(sources, 5), [])


def test_picks_are_nested_deterministic_and_spread_over_the_range(sources):
    picks = pick_networks(SPACE, sources, 10, seed=1)
    assert [n.ops for n in pick_networks(SPACE, sources, 4, seed=1)] == [n.ops for n in picks[:4]]
    assert len({n.ops for n in picks}) == 10
    pool = [net.ops for _, net in SPACE.sample_networks(1000, seed=1)]
    prices = sources[0].price(pool)
    picked = np.ptp(sources[0].price([n.ops for n in picks]))
    draws = np.random.default_rng(0).choice(prices, size=(50, 10))
    assert picked >= np.median(np.ptp(draws, axis=1))  # spread at least as wide as chance


def test_picks_without_sources_and_at_another_batch(sources):
    plain = pick_networks(SPACE, [], 3, batch=8)
    assert len(plain) == 3
    assert all(op.batch == 8 for net in plain for op in net.ops)


def test_a_network_beyond_the_timed_ones_gets_no_interval(sources, tmp_path):
    """A network of another space (224x224 inputs, wider ops) is extrapolated, however the
    timed networks agreed: the interval they calibrated never saw such ops."""
    predictor, _ = fit_transfer(mixed(sources, 12), sources, device="new")
    inside = predictor.network_answer(mixed(sources, 1, seed=9)[0][0])
    assert np.isfinite(inside.high_ms) and inside.interval_source == "networks"
    [(_, other)] = load_space("proxyless-mobile").sample_networks(1, seed=0)
    loaded = LatencyPredictor.load(predictor.save(tmp_path / "p.json"))
    for f in (predictor, loaded):
        beyond = f.network_answer(other.ops)
        assert beyond.high_ms == np.inf and beyond.low_ms < beyond.predicted_ms / 10
        assert "ops outside the fitted range" in beyond.interval_source


def test_the_model_line_names_only_the_devices_that_got_a_weight():
    from latkit.predictors.transfer import _Variant

    mix = _Variant((0, 1, 2), own=2)
    assert mix.describe("abc", np.array([0.5, 0.0, 0.2])) == (
        "mix of 2 devices with its own overhead, per-op cost"
    )
    assert mix.describe("abc", np.array([0.0, 0.0, 0.2])) == "c with its own overhead, per-op cost"
    assert mix.describe("abc", np.zeros(3)) == (
        "its own overhead, per-op cost alone (no device's F got a weight)"
    )


def test_picks_keep_the_networks_already_timed_and_avoid_held_out_ones(sources):
    """Already-timed networks come first, whatever the sources say now; networks `validate`
    timed are never picked (they must stay unseen by the fit)."""
    timed = [net for _, net in SPACE.sample_networks(3, seed=21)]
    held = pick_networks(SPACE, sources, 4, seed=1)
    picks = pick_networks(SPACE, sources[:1], 10, seed=1, first=timed, avoid={n.ops for n in held})
    assert [n.ops for n in picks[:3]] == [n.ops for n in timed]
    assert not {n.ops for n in held} & {n.ops for n in picks}
    assert len({n.ops for n in picks}) == 10
