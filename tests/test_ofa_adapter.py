"""F as once-for-all's efficiency predictor, tested against its interface: the `ofa` package
imports torchvision, which does not load here, so its calls are acted out from its source
(mit-han-lab/once-for-all: `ofa/nas/search_algorithm/evolution.py`,
`ofa/nas/accuracy_predictor/arch_encoder.py`, `ofa/tutorial/latency_table.py`)."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import yaml

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


def random_sample_arch(rng: random.Random) -> dict:
    """`MobileNetArchEncoder.random_sample_arch` (arch_encoder.py, lines 141-147)."""
    return {
        "ks": rng.choices([3, 5, 7], k=20),
        "e": rng.choices([3, 4, 6], k=20),
        "d": rng.choices([2, 3, 4], k=5),
        "image_size": rng.choice(SIZES),
    }


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
    rng = random.Random(0)
    for _ in range(10):
        arch = random_sample_arch(rng)
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
    rng = random.Random(1)
    for _ in range(10):
        arch = random_sample_arch(rng)
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
    arch = random_sample_arch(random.Random(2))
    zeroed = copy.deepcopy(arch)
    for i in range(20):
        if i % 4 >= arch["d"][i // 4]:
            zeroed["ks"][i] = zeroed["e"][i] = 0
    assert adapter.get_efficiency(zeroed) == adapter.get_efficiency(arch)


def test_a_bad_subnet_is_one_clear_error(predictor):
    adapter = OFAEfficiency(predictor)
    arch = random_sample_arch(random.Random(3))
    with pytest.raises(LatkitError, match="no input size 100"):
        adapter.get_efficiency({**arch, "image_size": 100})
    with pytest.raises(LatkitError, match="bad field 'd'"):
        adapter.get_efficiency({k: v for k, v in arch.items() if k != "d"})
    with pytest.raises(LatkitError, match="kernel 4"):
        adapter.get_efficiency({**arch, "ks": [4] * 20})


def test_an_evolutionary_search_through_get_efficiency_keeps_the_constraint(predictor):
    """`EvolutionFinder.run_evolution_search` (evolution.py, lines 33-140) in small: samples,
    mutations and crossovers are kept only when `get_efficiency(sample) <= constraint`; a stand-in
    accuracy (bigger is better) pushes the population against the constraint."""
    adapter = OFAEfficiency(predictor)
    rng = random.Random(4)
    calls = 0

    def efficiency(sample: dict) -> float:
        nonlocal calls
        calls += 1
        return adapter.get_efficiency(sample)

    def accuracy(sample: dict) -> float:
        active = [i for i in range(20) if i % 4 < sample["d"][i // 4]]
        return sum(sample["ks"][i] * sample["e"][i] for i in active) + sample["image_size"] / 8

    def valid(make, *args) -> tuple[dict, float]:
        while True:
            sample = make(*args)
            ms = efficiency(sample)
            if ms <= constraint:
                return sample, ms

    def mutate(parents: list) -> dict:
        child = copy.deepcopy(rng.choice(parents)[0])
        if rng.random() < 0.5:
            child["image_size"] = rng.choice(SIZES)
        for i in range(20):
            if rng.random() < 0.1:
                child["ks"][i], child["e"][i] = rng.choice([3, 5, 7]), rng.choice([3, 4, 6])
        for i in range(5):
            if rng.random() < 0.1:
                child["d"][i] = rng.choice([2, 3, 4])
        return child

    def crossover(parents: list) -> dict:
        a, b = rng.choice(parents)[0], rng.choice(parents)[0]
        return {
            k: [rng.choice(p) for p in zip(a[k], b[k])]
            if isinstance(a[k], list)
            else rng.choice([a[k], b[k]])
            for k in a
        }

    latencies = sorted(adapter.get_efficiency(random_sample_arch(rng)) for _ in range(20))
    constraint = latencies[len(latencies) // 2]
    population = [valid(random_sample_arch, rng) for _ in range(16)]
    start = max(accuracy(s) for s, _ in population)
    for _ in range(8):
        parents = sorted(population, key=lambda p: accuracy(p[0]), reverse=True)[:4]
        population = list(parents)
        population += [valid(mutate, parents) for _ in range(6)]
        population += [valid(crossover, parents) for _ in range(6)]
    best, best_ms = max(population, key=lambda p: accuracy(p[0]))
    assert all(ms <= constraint for _, ms in population)
    assert best_ms == adapter.get_efficiency(best) <= constraint
    assert accuracy(best) > start and best_ms > 0.8 * constraint
    assert calls >= 16 + 8 * 12
