"""F on whole networks: the network terms, their CV+ interval, one F for two spaces, and the
op side's honest residuals (unstable rows aside, flat families never extrapolating)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_device

from latkit.devices import load_device
from latkit.metrics import coverage, within
from latkit.ops import OpSpec, from_key
from latkit.predictors import LatencyPredictor, fit_device
from latkit.predictors.fit import stored_networks
from latkit.predictors.network_terms import CVPlusInterval, cv_plus, network_row
from latkit.predictors.selection import axis_splits, select
from latkit.profilers import get_profiler
from latkit.profilers.session import time_network
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from latkit.workflows.profile import profile_space

TRIM = Path(__file__).resolve().parent / "data" / "luts" / "proxylessnas" / "mobile_trim.yaml"


@pytest.fixture(scope="module")
def phone() -> tuple[list[OpSpec], np.ndarray]:
    """The ProxylessNAS authors' phone table (ms)."""
    table = yaml.safe_load(TRIM.read_text())
    return [from_key(k) for k in table], np.array([v["mean"] for v in table.values()])


def synthetic_networks(ops, predictor, n: int, seed: int, noise: float = 0.03):
    """Networks of the table's ops whose true latency follows known network terms (1.1 x the op
    sum, 0.2 ms less per op, 1.5 ms overhead), timed with `noise` relative log-normal error."""
    rng = np.random.default_rng(seed)
    stem = next(op for op in ops if op.type == "conv")
    logits = next(op for op in ops if op.type == "linear")
    blocks = [op for op in ops if op.type == "mbconv"]
    out = []
    for _ in range(n):
        picks = rng.choice(len(blocks), size=rng.integers(8, 30), replace=False)
        chosen = [stem, *(blocks[j] for j in picks), logits]  # one space: one stem, one head
        row = network_row(chosen, predictor.predict(chosen))
        truth = 1.1 * row[0] - 0.2 * row[1] + 1.5
        out.append((chosen, float(truth * np.exp(rng.normal(0, noise)))))
    return out


def test_a_network_the_terms_price_below_zero_gets_zero_and_no_interval(phone):
    """A negative overhead on a one-op network would price it below 0, with an interval that
    does not hold the answer: F says 0 and that the terms do not reach it."""
    ops, y = phone
    predictor = LatencyPredictor(family="additive", overhead_ms=-1e3).fit(ops, y)
    answer = predictor.network_answer(ops[:1])
    assert predictor.predict_network(ops[:1]) == answer.predicted_ms == 0.0
    assert (answer.low_ms, answer.high_ms) == (0.0, np.inf)
    assert "at or below 0" in answer.interval_source


def test_network_terms_recover_known_terms_and_the_cv_plus_interval_covers(phone):
    ops, y = phone
    predictor = LatencyPredictor(family="additive").fit(ops, y)
    calibration = synthetic_networks(ops, predictor, 40, seed=0)
    (held,) = predictor.fit_network_terms(calibration).values()
    assert held["acc10"] >= 0.9 and held["n"] == 40
    fresh = synthetic_networks(ops, predictor, 400, seed=1)
    answers = [predictor.network_answer(chosen) for chosen, _ in fresh]
    truth = [latency for _, latency in fresh]
    share = coverage([a.low_ms for a in answers], [a.high_ms for a in answers], truth)
    assert 0.82 <= share <= 0.99, share  # 90% nominal, on networks it never saw
    assert answers[0].interval_source == "networks (CV+)"
    assert within([a.predicted_ms for a in answers], truth, 0.10) >= 0.95


def test_cv_plus_residuals_come_from_terms_that_never_saw_them(phone):
    ops, y = phone
    predictor = LatencyPredictor(family="additive").fit(ops, y)
    samples = synthetic_networks(ops, predictor, 20, seed=2, noise=0.0)
    slow = (samples[0][0], samples[0][1] * 1.5)  # timed under load: 50% slower
    x = np.array([network_row(o, predictor.predict(o)) for o, _ in [slow, *samples[1:]]])
    y_all = np.array([t for _, t in [slow, *samples[1:]]])
    interval, guesses = cv_plus(x, y_all, 0.9, seed=0)
    # its own fold never fitted it: the outlier keeps its whole residual, log(1.5)
    assert interval.residuals[0] == pytest.approx(np.log(1.5), abs=0.02)
    assert guesses[0] == pytest.approx(samples[0][1], rel=0.02)
    assert len(interval.folds) == 10 and sorted(set(interval.fold_of)) == list(range(10))
    # few networks: no finite interval is honest
    small, _ = cv_plus(x[:5], y_all[:5], 0.9)
    assert not small.finite and small.bounds(x[0]) == (0.0, np.inf)


def test_network_interval_survives_save_and_load(tmp_path, phone):
    ops, y = phone
    predictor = LatencyPredictor(family="additive").fit(ops, y)
    predictor.fit_network_terms(synthetic_networks(ops, predictor, 15, seed=3))
    loaded = LatencyPredictor.load(predictor.save(tmp_path / "p.json"))
    assert list(loaded.groups_) == list(predictor.groups_) and len(loaded.groups_) == 1
    assert isinstance(loaded.groups_[next(iter(loaded.groups_))].interval, CVPlusInterval)
    probe = synthetic_networks(ops, predictor, 5, seed=4)
    for chosen, _ in probe:
        assert loaded.network_answer(chosen) == predictor.network_answer(chosen)
    assert loaded.terms == predictor.terms


def test_unstable_rows_are_tabled_but_never_fitted(phone):
    ops, y = phone
    wild = y.copy()
    wild[5] *= 8  # timed while something else ran: rounds disagreed, flagged unstable
    flags = np.zeros(len(ops), dtype=bool)
    flags[5] = True
    others = [i for i in range(len(ops)) if i != 5]
    clean = LatencyPredictor(family="additive").fit([ops[i] for i in others], y[others])
    flagged = LatencyPredictor(family="additive").fit(ops, wild, flags)
    trusting = LatencyPredictor(family="additive").fit(ops, wild)
    assert flagged.predict([ops[5]])[0] == wild[5]  # still its measurement, in the table
    assert flagged.meta["unstable_ops"] == 1
    unseen = [op.replace(cin=op.cin + 8) for op in ops if op.type == "mbconv" and not op.skip]
    assert np.allclose(flagged.predict(unseen), clean.predict(unseen))
    assert not np.allclose(trusting.predict(unseen), clean.predict(unseen))


def test_extrapolation_is_scored_per_axis_and_flat_families_never_answer_outside(phone):
    ops, y = phone
    splits = axis_splits(ops)
    assert {"width", "kernel"} <= set(splits)
    for axis, (train, test) in splits.items():
        assert len(set(train) & set(test)) == 0 and 0.2 <= len(test) / len(ops) <= 0.5, axis
    kernels = {ops[i].kernel for i in splits["kernel"][1]}
    assert kernels == {7}  # whole values held out: every kernel-7 op, no other
    chosen = select(ops, y, ("gbdt",), seed=0)
    assert chosen.family == "gbdt" and chosen.extrap_family == "additive"
    auto = select(ops, y, seed=0)
    held_out_once = len(set().union(*(set(t.tolist()) for _, t in splits.values())))
    assert len(auto.extrap_residuals) == held_out_once  # an op held out twice counts once
    assert len(auto.residuals) == len(ops)


def _profile(device, space, store, calibration: int) -> None:
    profile_space(device, load_space(space), store, calibration=calibration)


def test_a_second_space_on_the_same_device_leaves_the_first_spaces_accuracy(tmp_path):
    """F of proxyless-tiny (microsecond ops, networks below their op sum) before and after the
    same device profiles proxyless-mobile (millisecond ops, networks above it): one set of
    network terms must price both, so tiny's networks keep their accuracy."""
    path = write_device(tmp_path / "d.yaml", name="two-spaces", timing={"warmup": 3, "runs": 8})
    device = load_device(path)
    tiny = load_space("proxyless-tiny")
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        _profile(device, "proxyless-tiny", store, calibration=12)
        profiler = get_profiler(device)
        try:
            unseen = [net for _, net in tiny.sample_networks(15, seed=7)]
            truth = [
                time_network(profiler, None, net, origin="validate").median_ms for net in unseen
            ]
            ops = [tuple(profiler.prepare(net.ops)) for net in unseen]
        finally:
            profiler.close()

        def errors() -> np.ndarray:
            predictor = fit_device(store, "two-spaces", data_dir=tmp_path / "data").predictor
            predicted = [predictor.predict_network(o) for o in ops]
            return np.abs(np.array(predicted) / np.array(truth) - 1)

        alone = errors()
        _profile(device, "proxyless-mobile", store, calibration=12)
        env = get_profiler(device).environment().env_id
        assert len(stored_networks(store, "two-spaces", env)) == 24
        both = errors()
    assert np.median(both) <= np.median(alone) + 0.02, (np.median(alone), np.median(both))
    assert (both <= 0.10).mean() >= (alone <= 0.10).mean() - 0.14


def test_each_space_keeps_its_own_terms_and_a_stranger_takes_the_nearest(phone):
    ops, y = phone
    predictor = LatencyPredictor(family="additive").fit(ops, y)
    first = synthetic_networks(ops, predictor, 15, seed=5, noise=0.0)
    logits = next(op for op in ops if op.type == "linear")
    other_head = logits.replace(cout=10)  # another space: another classifier
    second = [
        ([*chosen[:-1], other_head], 0.7 * float(predictor.predict(chosen[:-1]).sum()))
        for chosen, _ in synthetic_networks(ops, predictor, 15, seed=6, noise=0.0)
    ]
    predictor.fit_network_terms(first + second)
    assert len(predictor.groups_) == 2
    for chosen, latency in first[:3] + second[:3]:
        assert predictor.predict_network(chosen) == pytest.approx(latency, rel=0.02)
    stranger = [*first[0][0][:-1], logits.replace(cout=500)]  # a head no group has
    assert predictor.group_of(stranger).key in predictor.groups_
    single = predictor.for_network(second[0][0])
    assert (
        single.groups_ == {}
        and single.meta["network_group"] == predictor.group_of(second[0][0]).key
    )
    assert single.predict_network(second[1][0]) == pytest.approx(
        predictor.predict_network(second[1][0])
    )
    assert predictor.groups_  # the original keeps every group
