"""Calibration as part of profiling, and F's network terms: bounded, local, never from validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_device

from latkit.devices import load_device
from latkit.ops import OpSpec, from_key
from latkit.predictors import LatencyPredictor, fit_device
from latkit.predictors.fit import stored_networks
from latkit.profilers import get_profiler
from latkit.profilers.session import calibration_archs, time_network
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from latkit.workflows.profile import profile_space

TRIM = Path(__file__).resolve().parent / "data" / "luts" / "proxylessnas" / "mobile_trim.yaml"
TINY = load_space("proxyless-tiny")
ZERO = OpSpec("zero", 14, 96, 96, skip=True)


@pytest.fixture(scope="module")
def phone() -> tuple[list[OpSpec], np.ndarray, LatencyPredictor]:
    """The ProxylessNAS authors' phone table (ms) and an additive F fitted on it."""
    table = yaml.safe_load(TRIM.read_text())
    ops, y = [from_key(k) for k in table], np.array([v["mean"] for v in table.values()])
    return ops, y, LatencyPredictor(family="additive").fit(ops, y)


def networks_of(ops, y, predictor, per_op: float, overhead: float, seed: int = 0):
    """Networks of the table's ops timed as F's sum, less `per_op` per op, plus `overhead`."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(12):
        chosen = [ops[j] for j in rng.choice(len(ops), size=rng.integers(5, 20), replace=False)]
        chosen += [ZERO] * int(rng.integers(0, 4))
        timed = sum(op.type != "zero" for op in chosen)
        samples.append((chosen, float(predictor.predict(chosen).sum()) - per_op * timed + overhead))
    return samples


def test_the_per_op_term_is_bounded_so_no_contribution_is_negative(phone):
    ops, y, predictor = phone
    cheapest = float(y.min())
    # networks that pay far less per op than the cheapest op costs on its own
    samples = networks_of(ops, y, predictor, per_op=3 * cheapest, overhead=2.0)
    predictor.fit_overhead(samples)
    try:
        assert predictor.per_op_ms <= predictor.scale * cheapest + 1e-9
        assert (predictor.contribution(ops) >= -1e-9).all()
    finally:
        predictor.per_op_ms = predictor.overhead_ms = 0.0
        predictor.scale, predictor.per_mb_ms = 1.0, 0.0


def test_near_a_target_the_overhead_is_the_local_level(phone):
    ops, y, predictor = phone
    samples = networks_of(ops, y, predictor, per_op=0.0, overhead=1.0)
    # the three networks predicted nearest 40 ms run 3 ms slower than the rest
    sums = np.array([float(predictor.predict(o).sum()) + 1.0 for o, _ in samples])
    near = np.argsort(np.abs(sums - 40.0))[:3]
    samples = [(o, t + (3.0 if i in near else 0.0)) for i, (o, t) in enumerate(samples)]
    try:
        predictor.fit_overhead(samples)  # globally: the three are outliers
        assert predictor.predict_network(samples[0][0]) == pytest.approx(
            samples[0][1] - (3.0 if 0 in near else 0.0), rel=0.02
        )
        predictor.fit_overhead(samples, near_ms=40.0)  # near 40 ms: their level
        for i in near:
            assert predictor.predict_network(samples[i][0]) == pytest.approx(
                samples[i][1], rel=0.05
            )
        assert predictor.meta["overhead_networks"] == 12
        # too few networks to tell the terms apart: only the overhead moves
        predictor.per_op_ms, predictor.scale = 0.25, 1.1
        predictor.fit_overhead(samples[:2])
        assert (predictor.per_op_ms, predictor.scale) == (0.25, 1.1)
    finally:
        predictor.per_op_ms = predictor.overhead_ms = 0.0
        predictor.scale, predictor.per_mb_ms = 1.0, 0.0


def test_calibration_networks_span_the_range_in_zero_heavy_and_zero_light_pairs():
    op_ms = {op.key: 0.001 * (1 + op.macs * 1e-6) for op in TINY.distinct_ops()}
    layers = TINY.layers()
    costs = [
        [0.0 if op.type == "zero" else op_ms[op.key] for op in lay.candidates] for lay in layers
    ]

    def cost(arch):
        return sum(c[i] for c, i in zip(costs, arch))

    def zeros(arch):
        return sum(lay.candidates[i].type == "zero" for lay, i in zip(layers, arch))

    archs = calibration_archs(TINY, op_ms, 10, seed=0)
    assert archs == calibration_archs(TINY, op_ms, 10, seed=0) and len(set(archs)) == 10
    fastest = tuple(int(np.argmin(c)) for c in costs)
    slowest = tuple(int(np.argmax(c)) for c in costs)
    assert fastest in archs and zeros(fastest) == 3  # every zero the space allows
    # the corners close the list: the slowest (widest, largest) and the deepest cheapest
    deepest = tuple(
        min((i for i, op in enumerate(lay.candidates) if op.type != "zero"), key=c.__getitem__)
        for lay, c in zip(layers, costs)
    )
    assert archs[-2:] == [slowest, deepest] and zeros(deepest) == 0
    # four levels from the fastest to the slowest, each a pair, the zero-heavier one first
    pairs = list(zip(archs[:8:2], archs[1:8:2]))
    assert np.diff([cost(heavy) for heavy, _ in pairs]).min() > 0
    assert all(zeros(heavy) >= zeros(light) for heavy, light in pairs)
    assert sum(zeros(heavy) > zeros(light) for heavy, light in pairs) >= 2


def test_profile_times_calibration_networks_and_fit_never_uses_validate(tmp_path):
    device = load_device(write_device(tmp_path / "cal.yaml", name="cal-cpu"))
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        profile_space(device, TINY, store, calibration=4)
        frame = store.networks("cal-cpu")
        assert list(frame["origin"]) == ["calibrate"] * 4
        assert all(name.startswith("proxyless-tiny-calibrate-") for name in frame["name"])
        profile_space(device, TINY, store, calibration=4)  # resumes: nothing timed again
        assert store.networks("cal-cpu")["measured_at"].tolist() == frame["measured_at"].tolist()
        # a network that validate timed is stored, and left out of every fit
        profiler = get_profiler(device)
        try:
            (_, network), *_ = TINY.sample_networks(1, seed=99)
            time_network(profiler, store, network, origin="validate")
            env = profiler.environment().env_id
        finally:
            profiler.close()
        assert len(stored_networks(store, "cal-cpu", env)) == 4
        assert len(stored_networks(store, "cal-cpu", env, exclude_origins=())) == 5
        report = fit_device(store, "cal-cpu", data_dir=tmp_path / "data")
    assert report.predictor.meta["overhead_networks"] == 4
    fitted = report.predictor
    assert fitted.per_op_ms <= fitted.scale * fitted.predict(TINY.distinct_ops()).min() + 1e-9
