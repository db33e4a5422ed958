"""ONNX export equals the torch modules in a real onnxruntime session, at the real input size."""

from __future__ import annotations

import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from latkit.modules import build_network, example_input
from latkit.ops import OpSpec
from latkit.profilers.onnx_export import export_onnx
from latkit.spaces import Network, load_space


def _check(ops, tmp_path=None):
    path = tmp_path / "m.onnx" if tmp_path else None
    data = export_onnx(ops, path)
    if path:
        assert path.read_bytes() == data
    model = onnx.load_from_string(data)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [ops[0].batch, ops[0].cin, ops[0].input_hw, ops[0].input_hw]
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = example_input(ops[0], seed=1)
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = build_network(ops)(x).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


@pytest.mark.parametrize(
    "op",
    [
        OpSpec("mbconv", 56, 24, 24, kernel=7, expand=6, skip=True),
        OpSpec("mbconv", 57, 24, 40, kernel=5, expand=3, stride=2),
        OpSpec(
            "mbconv", 14, 16, 16, kernel=3, expand=4, se=True, act="hswish", groups=2, skip=True
        ),
        OpSpec("conv", 224, 3, 32, kernel=3, stride=2),
        OpSpec(
            "mbconv",
            28,
            24,
            24,
            kernel=3,
            expand=6,
            se=True,
            act="swish",
            skip=True,
            se_style="effnet",
        ),
        OpSpec(
            "mbconv",
            29,
            40,
            80,
            kernel=5,
            expand=6,
            stride=2,
            se=True,
            act="relu",
            se_style="effnet",
        ),
        OpSpec("mbconv", 56, 32, 16, kernel=3, expand=1, se=True, act="swish", se_style="effnet"),
        OpSpec("conv", 224, 3, 32, kernel=3, stride=2, act="swish"),
        OpSpec("irf", 57, 16, 24, kernel=5, expand=1, groups=2, stride=2, act="relu"),
        OpSpec("irf", 28, 24, 24, kernel=3, expand=3, act="relu", skip=True),
        OpSpec("conv", 56, 24, 32, stride=2, act="relu"),
        OpSpec("linear", 7, 64, 10),
        OpSpec("pool", 7, 32, 32),
    ],
    ids=lambda op: op.key,
)
def test_op_export_matches_torch(op, tmp_path):
    _check([op], tmp_path)


def test_whole_networks_match_torch(published):
    _check(Network.load(published / "archs/proxylessnas/proxyless_mobile.config").ops)
    for name in ("proxyless-tiny", "fbnet-cifar"):
        for _, net in load_space(name).sample_networks(2, seed=0):
            _check(net.ops)


@pytest.mark.parametrize("name", ["fbnet", "ofa-mbv3"])
def test_a_sample_of_each_new_spaces_ops_matches_torch(name):
    """Three seeded ops of the space, exported at their real (ImageNet) size."""
    for op in random.Random(1).sample(load_space(name).distinct_ops(), 3):
        _check([op])


def test_effnet_se_and_swish_export_as_sigmoids_not_hard_ones():
    op = OpSpec("mbconv", 14, 16, 16, kernel=3, expand=4, se=True, act="swish", se_style="effnet")
    kinds = {node.op_type for node in onnx.load_from_string(export_onnx([op])).graph.node}
    assert "Sigmoid" in kinds and "HardSigmoid" not in kinds and "HardSwish" not in kinds
