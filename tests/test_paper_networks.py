"""The five paper networks are the papers' networks: parameters and MACs as published, and an
ONNX export that holds exactly those weights and runs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from paper_networks import INPUT_SHAPE, count_macs, deployed_params, export, paper_networks

#: (parameters, MACs) each paper publishes (see each builder's docstring for the table)
PUBLISHED = {
    "mobilenet_v2": (3.4e6, 300e6),
    "mnasnet_a1": (3.9e6, 312e6),
    "fbnet_c": (5.5e6, 375e6),
    "mobilenet_v3_large": (5.4e6, 219e6),
    "efficientnet_b0": (5.3e6, 390e6),
}


def test_every_network_has_its_published_figures():
    assert set(paper_networks()) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameters_and_macs_match_the_paper(name):
    model = paper_networks()[name]()
    params, macs = PUBLISHED[name]
    assert deployed_params(model) == pytest.approx(params, rel=0.03)
    assert count_macs(model) == pytest.approx(macs, rel=0.05)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_onnx_export_holds_the_weights_and_runs(name, tmp_path):
    path = export(name, tmp_path / f"{name}.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert weights == deployed_params(paper_networks()[name]())
    assert not any(node.op_type == "Identity" for node in model.graph.node)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(INPUT_SHAPE, dtype=np.float32)
    (logits,) = session.run(None, {"input": x})
    assert logits.shape == (1, 1000) and np.isfinite(logits).all()
