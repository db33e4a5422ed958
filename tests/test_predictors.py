"""LatencyPredictor on real latency data: the ProxylessNAS phone table and ops timed here."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from latkit.errors import LatkitError
from latkit.metrics import report
from latkit.ops import OpSpec, from_key
from latkit.predictors import (
    MODELS,
    LatencyPredictor,
    PredictorMismatchWarning,
    load_predictor,
    predictor_path,
)
from latkit.predictors.features import COMPONENTS, DESCRIPTORS, components, descriptors
from latkit.predictors.intervals import Interval
from latkit.predictors.models import TreeEnsemble, make_model
from latkit.spaces import load_space

DATA = Path(__file__).resolve().parent / "data"
TRIM = DATA / "luts" / "proxylessnas" / "mobile_trim.yaml"


@pytest.fixture(scope="module")
def phone_table() -> tuple[list[OpSpec], np.ndarray]:
    """The latency table the ProxylessNAS authors measured on a phone (ms)."""
    table = yaml.safe_load(TRIM.read_text())
    return [from_key(k) for k in table], np.array([v["mean"] for v in table.values()])


@pytest.fixture(scope="module")
def phone_predictor(phone_table) -> LatencyPredictor:
    ops, y = phone_table
    return LatencyPredictor(device="phone", meta={"runtime": "tflite", "batch": 1}).fit(ops, y)


def test_features_have_one_column_per_name_and_zero_for_zero_ops(phone_table):
    ops, _ = phone_table
    assert components(ops).shape == (len(ops), len(COMPONENTS))
    assert descriptors(ops).shape == (len(ops), len(DESCRIPTORS))
    zero = OpSpec("zero", 14, 96, 96, skip=True)
    assert not components([zero]).any()
    mb = ops[5]
    row = dict(zip(DESCRIPTORS, descriptors([mb])[0]))
    assert row["macs"] == mb.macs and row["params"] == mb.params
    assert row["activation_bytes"] == mb.activation_bytes


def test_features_tell_swish_and_the_effnet_se_apart():
    relu = OpSpec("mbconv", 14, 40, 40, kernel=3, expand=6, se=True, act="relu", skip=True)
    swish = relu.replace(act="swish")
    effnet = swish.replace(se_style="effnet")
    rows = [dict(zip(DESCRIPTORS, row)) for row in descriptors([relu, swish, effnet])]
    assert [(r["swish"], r["se_effnet"], r["hswish"]) for r in rows] == [
        (0, 0, 0),
        (1, 0, 0),
        (1, 1, 0),
    ]
    parts = [dict(zip(COMPONENTS, row)) for row in components([relu, swish, effnet])]
    assert parts[0]["swish_elems"] == 0 and parts[1]["swish_elems"] == parts[1]["act_elems"] > 0
    assert parts[1]["kernels"] == parts[0]["kernels"] + 2  # a MUL after each sigmoid
    assert parts[2]["kernels"] == parts[1]["kernels"] + 1  # ...and after the SE's
    assert 0 < parts[2]["se_elems"] < parts[1]["se_elems"]  # 10 bottleneck channels, not 64
    stem = dict(zip(COMPONENTS, components([OpSpec("conv", 32, 3, 16, kernel=3, act="swish")])[0]))
    assert stem["swish_elems"] == stem["act_elems"] == 16 * 32 * 32


def test_exact_table_hit_returns_the_measured_value(phone_table, phone_predictor):
    ops, y = phone_table
    assert np.array_equal(phone_predictor.predict(ops), y)
    assert all(phone_predictor.is_measured(op) for op in ops)


def test_zero_ops_cost_nothing_and_networks_add_the_overhead(phone_table, phone_predictor):
    ops, y = phone_table
    zero = OpSpec("zero", 14, 96, 96, skip=True)
    assert phone_predictor.predict([zero, ops[0]]).tolist() == [0.0, y[0]]
    phone_predictor.overhead_ms = 1.25
    try:
        assert phone_predictor.predict_network([ops[0], zero, ops[3]]) == pytest.approx(
            y[0] + y[3] + 1.25
        )
    finally:
        phone_predictor.overhead_ms = 0.0


def test_overhead_fit_separates_per_call_cost_from_per_network_cost(phone_table):
    # Networks of the real phone table's ops, with a per-call cost each isolated op timing
    # paid (0.3 ms) and a per-network overhead (2 ms); one network timed under load (x1.5).
    ops, y = phone_table
    predictor = LatencyPredictor(family="additive").fit(ops, y)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(12):
        chosen = [ops[j] for j in rng.choice(len(ops), size=rng.integers(5, 20), replace=False)]
        chosen += [OpSpec("zero", 14, 96, 96, skip=True)] * int(rng.integers(0, 4))
        timed = sum(op.type != "zero" for op in chosen)
        latency = float(predictor.predict(chosen).sum()) - 0.3 * timed + 2.0
        samples.append((chosen, latency * (1.5 if i == 3 else 1.0)))
    predictor.fit_overhead(samples)
    terms = predictor.terms
    assert terms.per_op_ms == pytest.approx(0.3, abs=0.02)
    assert terms.overhead_ms == pytest.approx(2.0, abs=0.1)
    assert terms.scale == pytest.approx(1.0, abs=0.01) and terms.per_mb_ms < 0.01
    clean = [s for i, s in enumerate(samples) if i != 3]
    for chosen, latency in clean:  # the network timed under load moved nothing
        assert predictor.predict_network(chosen) == pytest.approx(latency, rel=0.01)
    contribution = predictor.contribution([ops[0], OpSpec("zero", 14, 96, 96, skip=True)])
    assert contribution[0] == pytest.approx(y[0] - 0.3, abs=0.03) and contribution[1] == 0.0


def test_unseen_ops_go_to_the_model_and_are_cached(phone_predictor):
    op = OpSpec("mbconv", 14, 112, 112, kernel=5, expand=4.0, skip=True)
    assert not phone_predictor.is_measured(op)
    first = phone_predictor.predict([op])[0]
    model = phone_predictor.model_.predict([op])[0]
    assert first == pytest.approx(model) and first > 0
    assert phone_predictor.predict([op, op]).tolist() == [first, first]


def test_every_family_fits_and_predicts_positive_values(phone_table):
    ops, y = phone_table
    for name in MODELS:
        pred = make_model(name).fit(ops, y).predict(ops)
        assert pred.shape == y.shape and np.all(pred > 0)
        assert report(pred, y)["spearman"] > 0.9, name


def test_tree_ensemble_matches_sklearn_exactly(phone_table):
    from sklearn.ensemble import GradientBoostingRegressor

    ops, y = phone_table
    x = descriptors(ops)
    model = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0)
    model.fit(x, np.log(y))
    trees = TreeEnsemble.from_sklearn(model)
    wide = descriptors([op.replace(cin=op.cin * 2) for op in ops if op.type == "conv"])
    for probe in (x, wide):
        assert np.allclose(trees.predict(probe), model.predict(probe), rtol=0, atol=1e-12)
    again = TreeEnsemble.from_state(json.loads(json.dumps(trees.to_state())))
    assert np.array_equal(again.predict(x), trees.predict(x))


def test_auto_extrapolates_to_wider_ops_where_trees_cannot(phone_table):
    """Train on cin <= 96, predict the wider ops: the picked family must beat nn-Meter-style
    trees and stay within a sane error."""
    ops, y = phone_table
    train = [i for i, op in enumerate(ops) if op.cin <= 96]
    test = [i for i, op in enumerate(ops) if op.cin > 96]
    assert len(test) >= 10
    train_ops, test_ops = [ops[i] for i in train], [ops[i] for i in test]
    chosen = LatencyPredictor().fit(train_ops, y[train])
    trees = make_model("gbdt").fit(train_ops, y[train])
    picked = report(chosen.predict(test_ops), y[test])
    tree_only = report(trees.predict(test_ops), y[test])
    assert chosen.meta["family"] != "gbdt"
    assert picked["rmspe"] < tree_only["rmspe"] / 3
    assert picked["rmspe"] < 20 and picked["acc10"] >= 0.6
    assert set(chosen.comparison_) == set(MODELS)


def test_auto_keeps_the_best_family_per_kind_and_small_tables_use_the_cost_model(phone_table):
    ops, y = phone_table
    fitted = LatencyPredictor(seed=1).fit(ops, y)
    scores = fitted.comparison_
    assert set(scores) == set(MODELS)  # every registered family is compared
    assert fitted.meta["family"] == min(scores, key=lambda f: scores[f]["cv_score"])

    def extrap_rmspe(family):
        axes = [k for k in scores[family] if k.startswith("extrap_")]
        return np.mean([scores[family][k] for k in axes]) if axes else np.inf

    assert {k for k in scores["additive"] if k.startswith("extrap_")} >= {
        "extrap_width_rmspe",
        "extrap_kernel_rmspe",
    }
    assert fitted.meta["extrapolation_family"] == min(scores, key=extrap_rmspe)
    assert fitted.meta["extrapolation_family"] != "gbdt"  # flat outside: never answers there
    small = LatencyPredictor().fit(ops[:6], y[:6])
    assert small.meta["family"] == "additive" and small.comparison_ == {}
    assert not small.op_interval_.finite  # 6 rows cannot calibrate a 90% interval


def test_ops_outside_the_fitted_range_go_to_the_extrapolation_family(phone_table):
    ops, y = phone_table
    narrow = [i for i, op in enumerate(ops) if op.cin <= 96]
    fitted = LatencyPredictor().fit([ops[i] for i in narrow], y[narrow])
    wide = [op for op in ops if op.cin > 96 and op.type == "mbconv"]
    between = [op.replace(expand=4.0) for op in ops if op.type == "mbconv" and op.expand == 3]
    inside = [op for op in between if fitted.range_.inside(op)][:3]
    assert len(inside) == 3 and not any(fitted.is_measured(op) for op in inside)
    answers = fitted.explain(wide + inside)
    assert {a.source for a in answers[: len(wide)]} == {"model, outside the fitted range"}
    assert {a.source for a in answers[len(wide) :]} == {"model"}
    # wider than anything fitted: the family kept for the width axis answers
    assert {fitted.range_.axis(op) for op in wide} == {"width"}
    family = fitted.axis_families_["width"]
    assert family == fitted.meta["extrapolation_families"]["width"] != "gbdt"
    extrap = fitted.extrap_models_.get(family) or fitted.model_
    assert np.allclose([a.ms for a in answers[: len(wide)]], extrap.predict(wide))
    larger = [op.replace(input_hw=op.input_hw * 2) for op in ops if op.type == "mbconv"][:3]
    assert {fitted.range_.axis(op) for op in larger} == {"input"}
    low, high = fitted.predict_interval(wide)
    assert np.all(low < fitted.predict(wide)) and np.all(fitted.predict(wide) < high)


def test_intervals_cover_held_out_phone_ops_about_90_percent(phone_table):
    """5-fold on the phone table: each fold's F (intervals calibrated on its own training rows
    only) against the ops it never saw."""
    ops, y = phone_table
    order = np.random.default_rng(0).permutation(len(ops))
    hits = []
    for part in np.array_split(order, 5):
        train = np.setdiff1d(order, part)
        fitted = LatencyPredictor().fit([ops[i] for i in train], y[train])
        low, high = fitted.predict_interval([ops[i] for i in part])
        hits.extend((low <= y[part]) & (y[part] <= high))
    assert 0.8 <= np.mean(hits) <= 0.98


def test_conformal_halfwidth_is_the_finite_sample_quantile():
    from latkit.predictors.intervals import conformal_halfwidth

    residuals = np.arange(1, 20) / 100  # 19 residuals: the 90% quantile is the 18th smallest
    assert conformal_halfwidth(residuals, 0.9) == 0.18
    assert conformal_halfwidth(residuals[:8], 0.9) == np.inf  # 8 are too few for 90%
    assert conformal_halfwidth(residuals[:9], 0.9) == 0.09


def test_network_interval_from_ops_or_from_networks(phone_table, phone_predictor):
    ops, _ = phone_table
    network = load_space("proxyless-mobile").sample_networks(1, seed=0)[0][1].ops
    from_ops = phone_predictor.network_answer(network)
    assert from_ops.interval_source == "ops" and from_ops.level == 0.9
    assert from_ops.low_ms < from_ops.predicted_ms < from_ops.high_ms
    calibrated = LatencyPredictor.from_state(phone_predictor.to_state())
    calibrated.calibrate_networks(np.full(19, np.log(1.05)))
    answer = calibrated.network_answer(network)
    assert answer.interval_source == "networks"
    assert answer.high_ms == pytest.approx(answer.predicted_ms * 1.05)


def test_ops_of_a_kind_never_measured_have_no_interval_and_widen_the_networks(
    phone_table, phone_predictor
):
    """The phone table is all ReLU6 without SE: a swish op, or one with SE, is of a kind F
    never measured. Its answer is marked extrapolated and has no upper bound; so has every
    network holding it. An op only wider than the table widens the network interval, which
    the networks that calibrated it (all inside the range) say nothing about."""
    ops, _ = phone_table
    block = next(op for op in ops if op.type == "mbconv" and op.expand == 6)
    swish, se = block.replace(act="swish"), block.replace(se=True)
    assert {phone_predictor.range_.axis(op) for op in (swish, se)} == {"kind"}
    answers = phone_predictor.explain([swish, se])
    assert {a.source for a in answers} == {"model, outside the fitted range"}
    assert all(a.high_ms == np.inf and a.low_ms == 0 for a in answers)
    network = list(load_space("proxyless-mobile").sample_networks(1, seed=0)[0][1].ops)
    calibrated = LatencyPredictor.from_state(phone_predictor.to_state())
    calibrated.calibrate_networks(np.full(19, np.log(1.05)))
    inside = calibrated.network_answer(network)
    assert inside.interval_source == "networks"
    novel = calibrated.network_answer([*network, swish])
    assert novel.high_ms == np.inf and "widened by 1 ops" in novel.interval_source
    wider = block.replace(cin=block.cin * 4, cout=block.cout * 4)
    assert calibrated.range_.axis(wider) == "width"
    widened = calibrated.network_answer([*network, wider])
    assert widened.high_ms / widened.predicted_ms > inside.high_ms / inside.predicted_ms
    assert np.isfinite(widened.high_ms)


def test_fit_rejects_bad_input(phone_table):
    ops, y = phone_table
    with pytest.raises(LatkitError, match="3 ops, 2 latencies"):
        LatencyPredictor().fit(ops[:3], y[:2])
    with pytest.raises(LatkitError, match="positive"):
        LatencyPredictor().fit(ops[:2], [1.0, -1.0])
    with pytest.raises(LatkitError, match="not fitted"):
        LatencyPredictor().predict(ops[:1])


def test_save_load_round_trip_is_plain_json(tmp_path, phone_table, phone_predictor):
    ops, _ = phone_table
    space_ops = [op for layer in load_space("proxyless-mobile").layers() for op in layer.candidates]
    wider = [op.replace(cin=op.cin + 8) for op in ops if op.type == "mbconv" and not op.skip]
    path = phone_predictor.save(tmp_path / "p" / "predictor.json")
    text = path.read_text()
    state = json.loads(text)  # the whole predictor is one JSON document: nothing to unpickle
    assert state["format"] == "latkit-predictor" and state["version"] == 4
    assert b"\x80" not in path.read_bytes()  # no pickle protocol header anywhere
    loaded = LatencyPredictor.load(path)
    for probe in (ops, space_ops, wider):
        assert np.array_equal(loaded.predict(probe), phone_predictor.predict(probe))
        for got, want in zip(
            loaded.predict_interval(probe), phone_predictor.predict_interval(probe)
        ):
            assert np.array_equal(got, want)
    assert loaded.meta == phone_predictor.meta and loaded.device == "phone"


@pytest.mark.parametrize("family", ["gbdt", "hybrid"])
def test_tree_families_round_trip(tmp_path, phone_table, family):
    ops, y = phone_table
    fitted = LatencyPredictor(family=family).fit(ops[::2], y[::2])
    loaded = LatencyPredictor.load(fitted.save(tmp_path / "t.json"))
    assert np.array_equal(loaded.predict(ops), fitted.predict(ops))


def test_loading_for_another_device_or_runtime_warns_naming_both(tmp_path, phone_predictor):
    path = phone_predictor.save(tmp_path / "predictor.json")
    with pytest.warns(PredictorMismatchWarning) as caught:
        LatencyPredictor.load(path, expect={"device": "pixel7", "batch": 8, "runtime": "tflite"})
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert any("'phone'" in m and "'pixel7'" in m for m in messages)
    assert any("batch 1" in m and "batch 8" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LatencyPredictor.load(path, expect={"device": "phone", "batch": 1})


def test_damaged_or_foreign_files_are_one_line_errors(tmp_path, phone_predictor):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LatkitError, match="not a JSON predictor"):
        LatencyPredictor.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(LatkitError, match="not a latkit predictor"):
        LatencyPredictor.load(bad)
    state = phone_predictor.to_state()
    state["version"] = 99
    bad.write_text(json.dumps(state))
    with pytest.raises(LatkitError, match="format version 99"):
        LatencyPredictor.load(bad)
    state["version"] = 4
    state["model"]["family"] = "pickled"
    bad.write_text(json.dumps(state))
    with pytest.raises(LatkitError, match="'pickled'"):
        LatencyPredictor.load(bad)


def test_load_predictor_says_what_to_run(tmp_path, phone_predictor):
    assert predictor_path("phone", tmp_path) == tmp_path / "phone" / "predictor.json"
    with pytest.raises(LatkitError) as err:
        load_predictor("pixel7", tmp_path)
    message = str(err.value)
    assert "latkit profile --device" in message and "latkit fit --device pixel7" in message
    assert f"--data-dir {tmp_path}" in message
    phone_predictor.save(predictor_path("phone", tmp_path))
    assert load_predictor("phone", tmp_path).device == "phone"


def test_an_unbounded_interval_is_unbounded_around_zero_too():
    """An op F prices at 0 (a contribution clipped at 0) still gets (0, inf), not NaN, which
    would poison the sum of a network's interval."""
    low, high = Interval(np.inf, 0, "nothing", 0.9).bounds([0.0, 2.0])
    assert low.tolist() == [0.0, 0.0] and high.tolist() == [np.inf, np.inf]
    low, high = Interval(0.1, 20, "ops", 0.9).bounds(2.0)
    assert float(low) == pytest.approx(2.0 / np.exp(0.1)) and float(high) > 2.0
