"""Fitting F from whole-network timings: the additive least-squares fit on real op timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from latkit.errors import LatkitError
from latkit.metrics import report
from latkit.ops import from_key
from latkit.predictors import LatencyPredictor, fit_networks, load_network_samples
from latkit.predictors.networks import read_network_lines
from latkit.spaces import load_space

DATA = Path(__file__).resolve().parent / "data"
TRIM = DATA / "luts" / "proxylessnas" / "mobile_trim.yaml"
OVERHEAD_MS = 1.5
KEY = "Conv-input:224x224x3-output:112x112x32"


@pytest.fixture(scope="module")
def phone_times() -> dict:
    """Real per-op phone latencies (ms) for every op of the proxyless-mobile space."""
    table = yaml.safe_load(TRIM.read_text())
    return {from_key(k): v["mean"] for k, v in table.items()}


@pytest.fixture(scope="module")
def networks(phone_times) -> list[tuple[tuple, float]]:
    """Networks whose latency has a known additive structure: real op times + a fixed overhead."""
    space = load_space("proxyless-mobile")
    out = []
    for _, network in space.sample_networks(120, seed=3):
        total = sum(phone_times.get(op, 0.0) for op in network.ops)
        out.append((network.ops, total + OVERHEAD_MS))
    return out


def test_fit_from_networks_alone_predicts_held_out_networks(networks):
    predictor, held = fit_networks(networks[:80], test_fraction=0.25, seed=0)
    assert predictor.meta["family"] == "additive" and predictor.meta["source"] == "networks"
    assert predictor.meta["n_train"] == 60 and predictor.meta["n_test"] == 20
    assert held["acc10"] == 1.0 and held["rmspe"] < 3
    fresh = networks[80:]  # never seen, in any split
    fresh_metrics = report(
        [predictor.predict_network(ops) for ops, _ in fresh], [t for _, t in fresh]
    )
    assert fresh_metrics["acc10"] == 1.0 and fresh_metrics["spearman"] > 0.9


def test_fit_with_an_exact_base_recovers_the_overhead(networks, phone_times):
    """With the true per-op table as base, the only structure left is the overhead."""
    base = LatencyPredictor(device="phone").fit(list(phone_times), list(phone_times.values()))
    predictor, held = fit_networks(networks[:40], test_fraction=0.25, seed=0, base=base)
    assert predictor.meta["family"] == "calibrated" and predictor.device == "phone"
    assert predictor.overhead_ms == pytest.approx(OVERHEAD_MS, abs=0.05)
    assert predictor.model_.scale == pytest.approx(1.0, abs=0.01)
    assert held["rmspe"] < 0.2
    ops, latency = networks[100]
    assert predictor.predict_network(ops) == pytest.approx(latency, rel=0.005)


def test_calibrated_predictor_round_trips_through_json(tmp_path, networks, phone_times):
    base = LatencyPredictor(device="phone").fit(list(phone_times), list(phone_times.values()))
    predictor, _ = fit_networks(networks[:30], test_fraction=0.0, seed=0, base=base)
    loaded = LatencyPredictor.load(predictor.save(tmp_path / "predictor.json"))
    probe = [ops for ops, _ in networks[30:40]]
    assert [loaded.predict_network(o) for o in probe] == [
        predictor.predict_network(o) for o in probe
    ]


def test_fit_networks_needs_networks(networks):
    with pytest.raises(LatkitError, match="at least 2"):
        fit_networks(networks[:1])


def test_network_samples_read_from_jsonl(tmp_path, networks):
    path = tmp_path / "nets.jsonl"
    lines = [
        json.dumps({"ops": [op.key for op in ops], "latency_ms": t}) for ops, t in networks[:3]
    ]
    ops, latency = networks[3]
    lines.append(json.dumps({"ops": [op.to_dict() for op in ops], "latency_ms": latency}))
    path.write_text("\n".join(lines) + "\n\n")
    samples = load_network_samples(path)
    # keys name every op exactly except a zero op's identity skip, which costs nothing anyway
    assert [[op.key for op in s[0]] for s in samples] == [
        [op.key for op in n[0]] for n in networks[:4]
    ]
    assert tuple(samples[3][0]) == tuple(networks[3][0])  # op dicts are exact
    assert [s[1] for s in samples] == [n[1] for n in networks[:4]]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{oops", r"nets\.jsonl:2: not JSON"),
        (
            '{"ops": ["Conv-input:224x224x3-output:112x112x32"]}',
            r"nets\.jsonl:2: missing field 'latency_ms'",
        ),
        ('{"ops": ["Nope-input:1x1x1"], "latency_ms": 2}', r"nets\.jsonl:2: key 'Nope"),
        ('{"ops": [{"type": "conv", "cin": 3}], "latency_ms": 2}', r"nets\.jsonl:2: .*input_hw"),
        ('{"ops": [], "latency_ms": 2}', r"nets\.jsonl:2: needs a non-empty"),
        (f'{{"ops": ["{KEY}"], "latency_ms": 1{"0" * 400}}}', r":2: needs .* latency_ms > 0"),
        (f'{{"ops": ["{KEY}"], "latency_ms": 1{"0" * 5000}}}', r":2: not JSON \(a number"),
        ("[" * 100_000 + "]" * 100_000, r"nets\.jsonl:2: not JSON \(nested too deeply\)"),
        (b'{"name": "\xff"}', r"nets\.jsonl: not UTF-8 text"),
        ("[1, 2]", r"nets\.jsonl:2: not a JSON object"),
        ("5", r"nets\.jsonl:2: not a JSON object"),
        ('{"ops": 5, "latency_ms": 2}', r"nets\.jsonl:2: needs a non-empty `ops` list"),
        ('{"ops": "abc", "latency_ms": 2}', r"nets\.jsonl:2: needs a non-empty `ops` list"),
        ('{"ops": {"a": 1}, "latency_ms": 2}', r"nets\.jsonl:2: needs a non-empty `ops` list"),
        ('{"ops": [5], "latency_ms": 2}', r"nets\.jsonl:2: each of `ops` must be an op spec"),
        (f'{{"ops": ["{KEY}"], "latency_ms": true}}', r":2: needs .* latency_ms > 0"),
        (f'{{"ops": ["{KEY}"], "latency_ms": "2"}}', r":2: needs .* latency_ms > 0"),
        (f'{{"ops": ["{KEY}"], "latency_ms": null}}', r":2: missing field 'latency_ms'"),
        (f'{{"ops": ["{KEY}"], "latency_ms": 2, "name": 5}}', r":2: `name` must be a string"),
        (f'{{"ops": ["{KEY}"], "latency_ms": 2, "name": "\\udc80"}}', r":2: `name` must be"),
        (f'{{"ops": ["{KEY}"], "latency_ms": 1e-300}}', r":2: needs .* from 1e-06 to 1e\+07"),
        ('{"ops": ["Conv-input:0x0x0-output:0x0x0"], "latency_ms": 2}', r":2: key .* positive"),
        (f'{{"ops": ["{KEY}"], "latency_ms": 1.6e308}}', r":2: needs .* latency_ms > 0"),
    ],
)
def test_bad_network_lines_name_their_line(tmp_path, networks, line, message):
    """Each is one LatkitError naming the file and line, never a traceback or a guess."""
    ops, latency = networks[0]
    good = json.dumps({"ops": [op.key for op in ops], "latency_ms": latency})
    path = tmp_path / "nets.jsonl"
    bad = line if isinstance(line, bytes) else line.encode()
    path.write_bytes(good.encode() + b"\n" + bad + b"\n")
    with pytest.raises(LatkitError, match=message):
        load_network_samples(path)


def test_a_null_name_is_no_name(tmp_path):
    path = tmp_path / "nets.jsonl"
    path.write_text(f'{{"ops": ["{KEY}"], "latency_ms": 2, "name": null}}\n')
    assert [line.name for line in read_network_lines(path)] == ["nets.jsonl:1"]


def test_network_sums_are_additive_in_the_cost_features(networks):
    """The property the fit relies on: a network's features are the sum of its ops'."""
    from latkit.predictors.features import components

    ops, _ = networks[0]
    assert np.allclose(components(ops).sum(axis=0), sum(components([op])[0] for op in ops))


def test_networks_timed_under_background_load_do_not_drag_the_fit(networks, phone_times):
    """One network in eight timed 1.8x slow (a burst of load on a shared machine)."""
    loaded = [(ops, t * 1.8 if i % 8 == 0 else t) for i, (ops, t) in enumerate(networks[:80])]
    fresh = networks[80:]
    truth = [t for _, t in fresh]
    alone, _ = fit_networks(loaded, test_fraction=0.0, seed=0)
    assert report([alone.predict_network(o) for o, _ in fresh], truth)["rmspe"] < 3
    base = LatencyPredictor().fit(list(phone_times), list(phone_times.values()))
    calibrated, _ = fit_networks(loaded, test_fraction=0.0, seed=0, base=base)
    assert calibrated.overhead_ms == pytest.approx(OVERHEAD_MS, abs=0.3)
    assert report([calibrated.predict_network(o) for o, _ in fresh], truth)["rmspe"] < 1


@pytest.fixture(scope="module")
def other_device(phone_times) -> list[tuple[tuple, float]]:
    """Whole networks of another device: 1.7x slower than the phone, 7x7 kernels 1.3x slower
    still, 0.4 ms per op and 3 ms per network more, and 2% timing noise: its ranking of
    architectures mostly carries over from the phone, its scale does not."""
    rng = np.random.default_rng(0)
    out = []
    for _, network in load_space("proxyless-mobile").sample_networks(130, seed=9):
        ops = [op for op in network.ops if op.type != "zero"]
        slow = sum(1.7 * phone_times[op] * (1.3 if op.kernel == 7 else 1.0) for op in ops)
        out.append((network.ops, (slow + 0.4 * len(ops) + 3.0) * rng.normal(1, 0.02)))
    return out


def test_few_shot_from_ten_networks_with_another_device_as_prior(other_device, phone_times):
    """`--train 10 --prior phone`: scored on the 120 networks it was not fitted on."""
    prior = LatencyPredictor(device="phone").fit(list(phone_times), list(phone_times.values()))
    alone, alone_held = fit_networks(other_device, n_train=10, seed=0, device="board")
    transfer, held = fit_networks(other_device, n_train=10, seed=0, base=prior, device="board")
    assert transfer.meta["n_train"] == 10 and transfer.meta["n_test"] == 120
    assert transfer.device == "board" and transfer.meta["prior"] == "phone"
    assert set(held) == {"acc5", "acc10", "rmspe", "spearman", "kendall", "coverage"}
    assert held["kendall"] > alone_held["kendall"] and held["rmspe"] < alone_held["rmspe"]
    assert held["spearman"] > 0.8 and held["acc10"] >= 0.8
    # the interval was calibrated on the 10 training networks only, by cross-validation
    assert transfer.network_interval_.n == 130 and held["coverage"] >= 0.7


def test_train_n_needs_networks_on_both_sides(networks):
    with pytest.raises(LatkitError, match="--train 80: needs at least 2 networks to fit and 1"):
        fit_networks(networks[:80], n_train=80)


def test_ops_beyond_the_fitted_networks_are_extrapolated(networks):
    """F from networks alone has no interval for a network whose ops none of them held."""
    predictor, _ = fit_networks(networks[:40], test_fraction=0.0, seed=0)
    predictor.calibrate_networks([0.01] * 20)
    assert np.isfinite(predictor.network_answer(networks[50][0]).high_ms)
    [(_, tiny)] = load_space("proxyless-tiny").sample_networks(1, seed=0)
    answer = predictor.network_answer(tiny.ops)
    assert answer.high_ms == np.inf and "outside the fitted range" in answer.interval_source


def test_op_dicts_take_the_device_batch_and_refuse_another(tmp_path):
    op = {"type": "conv", "input_hw": 8, "cin": 3, "cout": 8}
    path = tmp_path / "nets.jsonl"
    path.write_text(json.dumps({"ops": [op], "latency_ms": 1.0}) + "\n")
    [line] = read_network_lines(path, batch=2)
    assert line.ops[0].batch == 2
    path.write_text(json.dumps({"ops": [{**op, "batch": 4}], "latency_ms": 1.0}) + "\n")
    with pytest.raises(LatkitError, match="nets.jsonl:1: .*batch 4 where the device runs batch 2"):
        read_network_lines(path, batch=2)
