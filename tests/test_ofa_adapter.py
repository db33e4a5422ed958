"""F as once-for-all's efficiency predictor, tested against its interface: the `ofa` package
imports torchvision, which does not load here, so its calls are acted out from its source
(mit-han-lab/once-for-all: `ofa/nas/search_algorithm/evolution.py`,
`ofa/nas/accuracy_predictor/arch_encoder.py`, `ofa/tutorial/latency_table.py`)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from bench.ofa_evolution import Search
from latkit.errors import LatkitError
from latkit.predictors import fit_device, import_lut
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from latkit.workflows.ofa import OFAEfficiency

NOTE10 = Path(__file__).resolve().parent / "data" / "luts" / "ofa-note10"
SIZES = [176, 224]


def fitted(tmp: Path, sizes: list[int]):
    """F fitted on once-for-all's Note10 tables at `sizes`: every block is a table hit."""
    with MeasurementStore(tmp / "store.sqlite") as store:
        for size in sizes:
            import_lut(store, NOTE10 / f"{size}_lookup_table.yaml", "note10")
        return fit_device(store, "note10", data_dir=tmp).predictor


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return fitted(tmp_path_factory.mktemp("ofa"), SIZES)


@pytest.fixture(scope="module")
def note10_176(tmp_path_factory):
    """F of one table: the head's keys do not name the resolution, and two tables time them
    differently, so F of several tables answers their mean."""
    return fitted(tmp_path_factory.mktemp("ofa176"), [176])


def sampler(seed: int) -> Search:
    """Subnets as `MobileNetArchEncoder.random_sample_arch` draws them, at `SIZES`
    (bench/ofa_evolution.py's `Search`, with no constraint yet)."""
    return Search(None, math.inf, seed, resolutions=SIZES)


def note10_latency(spec: dict) -> float:
    """once-for-all's own answer: `LatencyEstimator.predict_network_latency_given_spec` with
    `query` (ofa/tutorial/latency_table.py, lines 28-57 and 117-192), on the Note10 table."""
    size = spec["r"][0]
    lut = yaml.safe_load((NOTE10 / f"{size}_lookup_table.yaml").read_text())

    def query(kind, cin, cout, **block):
        key = [kind, "input:" + "x".join(map(str, cin)), "output:" + "x".join(map(str, cout))]
        key += [f"{name}:{value}" for name, value in block.items()]
        return lut["-".join(key)]["mean"]

    fsize = (size + 1) // 2
    total = query("Conv", [size, size, 3], [fsize, fsize, 24])
    total += query(
        "expanded_conv",
        [fsize, fsize, 24],
        [fsize, fsize, 24],
        expand=24,
        kernel=3,
        stride=1,
        idskip=1,
        se=0,
        hs=0,
    )
    cin, strides, widths = 24, [2, 2, 2, 1, 2], [32, 48, 96, 136, 192]
    hswish, se = [0, 0, 1, 1, 1], [0, 1, 0, 1, 1]
    for i in range(20):
        stage = i // 4
        if i % 4 + 1 > spec["d"][stage]:
            continue
        stride = strides[stage] if i % 4 == 0 else 1
        out = int((fsize - 1) / stride + 1)
        total += query(
            "expanded_conv",
            [fsize, fsize, cin],
            [out, out, widths[stage]],
            expand=round(cin * spec["e"][i]),
            kernel=spec["ks"][i],
            stride=stride,
            idskip=int(i % 4 != 0),
            se=se[stage],
            hs=hswish[stage],
        )
        fsize, cin = out, widths[stage]
    total += query("Conv_1", [fsize, fsize, 192], [fsize, fsize, 1152])
    total += query("AvgPool2D", [fsize, fsize, 1152], [1, 1, 1152])
    total += query("Conv_2", [1, 1, 1152], [1, 1, 1536])
    return total + query("Logits", [1, 1, 1536], [1000])


def test_get_efficiency_is_fs_network_latency_of_the_subnet(predictor):
    adapter = OFAEfficiency(predictor)
    space = load_space("ofa-mbv3")
    draw = sampler(0)
    for _ in range(10):
        arch = draw.sample()
        ops = space.ofa_network(arch).ops
        assert ops[0].input_hw == arch["image_size"]
        assert adapter.get_efficiency(arch) == predictor.predict_network(ops)
        answer = adapter.answer(arch)
        assert answer.predicted_ms == adapter.get_efficiency(arch)
        assert answer.low_ms <= answer.predicted_ms <= answer.high_ms


def test_it_answers_what_once_for_alls_note10_table_answers(note10_176):
    """Fitted on a Note10 table alone (every op a table hit, nothing beyond the ops), F's
    answer is once-for-all's own, in both spellings of a subnet (`image_size` of `ofa.nas`,
    `r` and `wid` of `ofa.tutorial`)."""
    adapter = OFAEfficiency(note10_176)
    draw = sampler(1)
    for _ in range(10):
        arch = draw.sample()
        del arch["image_size"]
        spec = {"wid": None, **arch, "r": [176]}
        expected = note10_latency(spec)
        assert adapter.predict_efficiency(spec) == pytest.approx(expected, rel=1e-9)
        assert adapter.get_efficiency({**arch, "image_size": 176}) == pytest.approx(
            expected, rel=1e-9
        )


def test_blocks_past_the_depth_may_hold_anything(predictor):
    """`MobileNetArchEncoder.feature2arch` writes 0 for the kernel and ratio of a block past its
    stage's depth (arch_encoder.py, lines 130-132)."""
    adapter = OFAEfficiency(predictor)
    arch = sampler(2).sample()
    zeroed = copy.deepcopy(arch)
    for i in range(20):
        if i % 4 >= arch["d"][i // 4]:
            zeroed["ks"][i] = zeroed["e"][i] = 0
    assert adapter.get_efficiency(zeroed) == adapter.get_efficiency(arch)


def test_a_bad_subnet_is_one_clear_error(predictor):
    adapter = OFAEfficiency(predictor)
    arch = sampler(3).sample()
    with pytest.raises(LatkitError, match="no input size 100"):
        adapter.get_efficiency({**arch, "image_size": 100})
    with pytest.raises(LatkitError, match="bad field 'd'"):
        adapter.get_efficiency({k: v for k, v in arch.items() if k != "d"})
    with pytest.raises(LatkitError, match="kernel 4"):
        adapter.get_efficiency({**arch, "ks": [4] * 20})


def test_an_evolutionary_search_through_get_efficiency_keeps_the_constraint(predictor):
    """`EvolutionFinder.run_evolution_search` (evolution.py, lines 33-140) in small, as
    bench/ofa_evolution.py writes it out: samples, mutations and crossovers are kept only when
    `get_efficiency(sample) <= constraint`; a stand-in accuracy (bigger is better) pushes the
    population against the constraint."""
    search = Search(OFAEfficiency(predictor), math.inf, 4, resolutions=SIZES)
    latencies = sorted(search.price(search.sample()) for _ in range(20))
    search.constraint = constraint = latencies[len(latencies) // 2]
    start = max(search.valid(search.sample)[0] for _ in range(16))
    accuracy, best, best_ms = search.run(16, 8)
    assert best_ms == search.efficiency.get_efficiency(best) <= constraint
    assert accuracy == search.accuracy(best) > start and best_ms > 0.8 * constraint
    assert search.rejected > 0  # the constraint bound
    assert search.priced >= 20 + 16 + 16 + 8 * 12
