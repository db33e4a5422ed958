"""The .tflite writer: every op type, run in the real LiteRT interpreter, equals torch eval mode."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import OpResolverType
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from latkit.errors import LatkitError
from latkit.modules import build_network, example_input
from latkit.ops import ACTS, SE_STYLES, OpSpec
from latkit.profilers.litert import run_tflite
from latkit.profilers.tflite_writer import UnsupportedOp, export_tflite
from latkit.spaces import Network, load_space

RTOL = 1e-4
OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def relative_error(ops: list[OpSpec], seed: int = 0, **run_kw) -> float:
    """max |LiteRT - torch| / max |torch| on one random input (0 when both are exactly zero)."""
    x = example_input(ops[0], seed=seed + 1)
    with torch.no_grad():
        ref = build_network(ops, seed=seed)(x).numpy()
    out = run_tflite(export_tflite(ops, seed=seed), x.numpy(), **run_kw)
    assert out.shape == ref.shape
    scale = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max())
    return err / scale if scale else err


def parse(model: bytes) -> schema.ModelT:
    return schema.ModelT.InitFromPackedBuf(model)


def op_names(model: bytes) -> list[str]:
    m = parse(model)
    codes = [OP_NAMES[c.builtinCode] for c in m.operatorCodes]
    return [codes[op.opcodeIndex] for op in m.subgraphs[0].operators]


@st.composite
def mbconv_specs(draw) -> OpSpec:
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    cin = groups * draw(st.integers(1, 6))
    expand = draw(st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0, 6.0]))
    assume(round(cin * expand) % groups == 0)
    stride = draw(st.sampled_from([1, 2]))
    cout = draw(st.sampled_from([cin, groups * draw(st.integers(1, 6))]))
    skip = stride == 1 and cin == cout and draw(st.booleans())
    se = draw(st.booleans())
    return OpSpec(
        draw(st.sampled_from(["mbconv", "irf"])),
        draw(st.integers(1, 13)),
        cin,
        cout,
        stride=stride,
        kernel=draw(st.sampled_from([3, 5, 7])),
        expand=expand,
        groups=groups,
        se=se,
        act=draw(st.sampled_from(ACTS)),
        skip=skip,
        batch=draw(st.sampled_from([1, 1, 2])),
        se_style=draw(st.sampled_from(SE_STYLES)) if se else "mbv3",
    )


@st.composite
def other_specs(draw) -> OpSpec:
    kind = draw(st.sampled_from(["conv", "linear", "pool", "zero"]))
    hw, cin = draw(st.integers(1, 13)), draw(st.integers(1, 24))
    cout = draw(st.integers(1, 24))
    batch = draw(st.sampled_from([1, 2]))
    if kind == "conv":
        return OpSpec(
            "conv",
            hw,
            cin,
            cout,
            stride=draw(st.sampled_from([1, 2])),
            kernel=draw(st.sampled_from([1, 3, 5])),
            act=draw(st.sampled_from(ACTS)),
            batch=batch,
        )
    if kind == "zero":
        skip = draw(st.booleans())
        stride = 1 if skip else draw(st.sampled_from([1, 2]))
        return OpSpec("zero", hw, cin, cin if skip else cout, stride=stride, skip=skip, batch=batch)
    return OpSpec(kind, hw, cin, cin if kind == "pool" else cout, batch=batch)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.one_of(mbconv_specs(), mbconv_specs(), other_specs()), seed=st.integers(0, 99))
def test_random_op_equals_torch(spec: OpSpec, seed: int) -> None:
    assert relative_error([spec], seed=seed) <= RTOL, spec


@pytest.mark.parametrize("name", ["fbnet", "fbnet-cifar", "ofa-mbv3"])
def test_a_sample_of_each_new_spaces_ops_equals_torch(name) -> None:
    """Four seeded ops of the space (its whole op list is hundreds), plus a whole network."""
    space = load_space(name)
    for op in random.Random(0).sample(space.distinct_ops(), 4):
        assert relative_error([op]) <= RTOL, op.key
    if name == "fbnet-cifar":
        (_, network), *_ = space.sample_networks(1, seed=2)
        assert relative_error(list(network.ops)) <= RTOL


def test_fbnet_shuffle_is_one_gather_and_relu_is_fused() -> None:
    spec = OpSpec("irf", 6, 8, 8, kernel=3, expand=1, groups=2, act="relu", skip=True)
    assert op_names(export_tflite([spec])) == [
        "CONV_2D",
        "GATHER",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "ADD",
    ]
    options = parse(export_tflite([spec])).subgraphs[0].operators[0].builtinOptions
    assert options.fusedActivationFunction == schema.ActivationFunctionType.RELU


def test_published_proxyless_mobile_network_equals_torch(published) -> None:
    network = Network.load(published / "archs/proxylessnas/proxyless_mobile.config")
    assert relative_error(list(network.ops)) <= RTOL


@pytest.mark.parametrize(
    "resolver", [OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, OpResolverType.BUILTIN_REF]
)
def test_plain_kernels_agree_too(resolver) -> None:
    """Phones may run without XNNPACK: grouped convs, both SEs, hswish, swish and PAD must hold
    there too."""
    ops = [
        OpSpec("conv", 9, 3, 8, stride=2, kernel=3, act="hswish"),
        OpSpec("mbconv", 5, 8, 8, kernel=5, expand=3, groups=2, se=True, act="hswish", skip=True),
        OpSpec("mbconv", 5, 8, 16, stride=2, kernel=7, expand=6, groups=4),
        OpSpec("mbconv", 3, 16, 16, expand=4, se=True, act="swish", se_style="effnet", skip=True),
        OpSpec("conv", 3, 16, 16, act="swish"),
        OpSpec("linear", 3, 16, 10),
    ]
    assert relative_error(ops, resolver=resolver) <= RTOL


def test_file_layout_names_and_padding(tmp_path) -> None:
    spec = OpSpec("mbconv", 8, 16, 24, stride=2, kernel=5, expand=6, groups=2, se=True)
    path = tmp_path / "op.tflite"
    model = export_tflite([spec], path)
    assert path.read_bytes() == model and model[4:8] == b"TFL3"
    m = parse(model)
    graph = m.subgraphs[0]
    (inp,), (out,) = graph.inputs, graph.outputs
    assert graph.tensors[inp].name == b"input" and list(graph.tensors[inp].shape) == [1, 8, 8, 16]
    assert graph.tensors[out].name == b"output" and list(graph.tensors[out].shape) == [1, 4, 4, 24]
    names = op_names(model)
    # stride 2: explicit symmetric PAD then a VALID depthwise conv, never TF's asymmetric SAME
    pad_at = names.index("PAD")
    assert names[pad_at + 1] == "DEPTHWISE_CONV_2D"
    depthwise = graph.operators[pad_at + 1].builtinOptions
    assert depthwise.padding == schema.Padding.VALID and depthwise.strideH == 2
    assert "BATCH_NORM" not in " ".join(names)  # BN is folded into the conv weights
    grouped = [
        c for c in m.operatorCodes if OP_NAMES[c.builtinCode] == "CONV_2D" and c.version == 6
    ]
    assert grouped, "a grouped 1x1 conv must be a version-6 CONV_2D"
    assert names.count("MEAN") == 1 and names.count("MUL") == 2


def test_same_weights_as_torch_module() -> None:
    """The written filter is the torch conv weight scaled by the BN factor, not a fresh init."""
    spec = OpSpec("conv", 4, 3, 8, kernel=3)
    conv, bn = build_network([spec], seed=5)[0][:2]
    m = parse(export_tflite([spec], seed=5))
    conv_op = m.subgraphs[0].operators[op_names(export_tflite([spec], seed=5)).index("CONV_2D")]
    weight = m.subgraphs[0].tensors[conv_op.inputs[1]]
    stored = np.frombuffer(m.buffers[weight.buffer].data.tobytes(), np.float32).reshape(
        weight.shape
    )
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    expected = conv.weight.detach().numpy().transpose(0, 2, 3, 1) * scale[:, None, None, None]
    np.testing.assert_allclose(stored, expected, rtol=1e-6)


def test_zero_ops_really_compute_identity_and_zeros() -> None:
    identity = OpSpec("zero", 6, 8, 8, skip=True)
    assert op_names(export_tflite([identity])) == ["RESHAPE"]
    assert relative_error([identity]) == 0.0
    zeros = OpSpec("zero", 7, 8, 12, stride=2)
    x = example_input(zeros).numpy()
    out = run_tflite(export_tflite([zeros]), x)
    assert out.shape == (1, 12, 4, 4) and not out.any()
    # inside a network the identity block adds no op at all
    chain = [OpSpec("conv", 6, 3, 8, kernel=1), identity]
    assert op_names(export_tflite(chain)) == ["CONV_2D"]


def test_unsupported_ops_raise_instead_of_writing() -> None:
    assert issubclass(UnsupportedOp, LatkitError)
    with pytest.raises(UnsupportedOp, match="2 GiB"):
        export_tflite([OpSpec("linear", 1, 40000, 20000)])
    with pytest.raises(UnsupportedOp, match="empty"):
        export_tflite([])
    with pytest.raises(UnsupportedOp, match="feature map"):
        export_tflite([OpSpec("linear", 1, 8, 8), OpSpec("conv", 1, 8, 8, kernel=1)])


def test_swish_is_logistic_then_mul_and_the_effnet_gate_a_logistic() -> None:
    """EfficientNet-B0's block: swish after the expansion, the depthwise conv and the SE's
    reduction; the SE gates with a sigmoid (no hard-sigmoid arithmetic)."""
    spec = OpSpec(
        "mbconv", 7, 16, 16, kernel=5, expand=6, se=True, act="swish", se_style="effnet", skip=True
    )
    model = export_tflite([spec])
    assert op_names(model) == [
        *("CONV_2D", "LOGISTIC", "MUL"),  # expand + swish
        *("DEPTHWISE_CONV_2D", "LOGISTIC", "MUL"),  # depthwise + swish
        "MEAN",
        *("CONV_2D", "LOGISTIC", "MUL"),  # SE reduce (to cin / 4 = 4) + swish
        *("CONV_2D", "LOGISTIC"),  # SE expand + sigmoid gate
        "MUL",  # scale
        *("CONV_2D", "ADD"),  # project + skip
    ]
    assert relative_error([spec]) <= RTOL
    relu = spec.replace(act="relu")  # MnasNet-A1: ReLU fused, a sigmoid gate still
    assert op_names(export_tflite([relu])).count("LOGISTIC") == 1
    assert relative_error([relu]) <= RTOL
