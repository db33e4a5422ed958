"""Op specs round-trip exactly through both key dialects, on every key of the real tables."""

from __future__ import annotations

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from latkit.errors import LatkitError
from latkit.modules import build_op, example_input
from latkit.ops import ACTS, SE_STYLES, OpSpec, detect_dialect, from_key, to_key


def _keys(path):
    return list(yaml.safe_load(path.read_text()))


def test_every_proxylessnas_key_round_trips(published):
    keys = _keys(published / "luts/proxylessnas/mobile_trim.yaml")
    assert len(keys) == 72
    for key in keys:
        spec = from_key(key)
        assert detect_dialect(key) == "proxylessnas"
        assert to_key(spec, "proxylessnas") == key
        assert spec.key == key


def test_every_ofa_key_round_trips(published):
    files = sorted((published / "luts/ofa-note10").glob("*_lookup_table.yaml"))
    assert len(files) == 17
    total = 0
    for path in files:
        for key in _keys(path):
            spec = from_key(key)
            assert to_key(spec, "ofa") == key, key
            total += 1
    assert total > 17 * 90


def test_ofa_expand_is_mid_channels_and_ratio_in_spec():
    spec = from_key(
        "expanded_conv-input:14x14x136-output:7x7x192-expand:408-kernel:3-stride:2-idskip:0-se:1-hs:1"
    )
    assert (spec.mid, spec.expand, spec.se, spec.act, spec.stride) == (408, 3.0, True, "hswish", 2)
    assert spec.key.endswith("-expand:3-kernel:3-stride:2-idskip:0-se:1-hs:1")


def test_fixed_op_keys():
    stem = from_key("Conv-input:224x224x3-output:112x112x32")
    assert (stem.type, stem.kernel, stem.stride) == ("conv", 3, 2)
    mix = from_key("Conv_1-input:7x7x320-output:7x7x1280")
    assert (mix.type, mix.kernel) == ("conv", 1)
    logits = from_key("Logits-input:7x7x1280-output:1000")
    assert (logits.type, logits.input_hw, logits.cout) == ("linear", 7, 1000)
    pool = from_key("AvgPool2D-input:7x7x1152-output:1x1x1152")
    assert pool.type == "pool" and pool.output_hw == 1


@pytest.mark.parametrize(
    "bad",
    [
        "expanded_conv-input:56x56x24",
        "Conv-input:224x224x3",
        "garbage",
        "expanded_conv-input:56x56x24-output:28x28x24-expand:6-kernel:3-stride:1-idskip:0",
        "expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:3-stride:1-idskip:1-foo:1",
    ],
)
def test_bad_keys_raise_one_clear_error(bad):
    with pytest.raises(LatkitError, match="key"):
        from_key(bad)


mbconv_specs = st.builds(
    lambda kind, hw, cin, cout, k, e, s, se, act, g, style: OpSpec(
        kind,
        hw,
        cin * g,
        cout * g,
        stride=s,
        kernel=k,
        expand=e,
        groups=g,
        se=se,
        act=act,
        skip=(s == 1 and cin == cout),
        se_style=style if se else "mbv3",
    ),
    kind=st.sampled_from(["mbconv", "irf"]),
    hw=st.integers(1, 64),
    cin=st.integers(1, 48),
    cout=st.integers(1, 48),
    k=st.sampled_from([3, 5, 7]),
    e=st.sampled_from([1.0, 3.0, 4.0, 6.0]),
    s=st.sampled_from([1, 2]),
    se=st.booleans(),
    act=st.sampled_from(ACTS),
    g=st.sampled_from([1, 2]),
    style=st.sampled_from(SE_STYLES),
)


@settings(max_examples=300, deadline=None)
@given(mbconv_specs, st.sampled_from(["proxylessnas", "ofa"]))
def test_generated_specs_round_trip(spec, dialect):
    key = to_key(spec, dialect)
    back = from_key(key, dialect)
    assert to_key(back, dialect) == key
    assert back.mid == spec.mid
    assert back == spec


def test_dict_round_trip_and_validation():
    spec = OpSpec("mbconv", 28, 40, 40, kernel=5, expand=6, skip=True)
    assert OpSpec.from_dict(spec.to_dict()) == spec
    assert OpSpec.from_dict({k: str(v) for k, v in spec.to_dict().items()}) == spec
    with pytest.raises(LatkitError, match="unknown op field"):
        OpSpec.from_dict({**spec.to_dict(), "colour": 1})
    with pytest.raises(LatkitError, match="identity skip"):
        OpSpec("mbconv", 28, 40, 80, skip=True)
    with pytest.raises(LatkitError, match="op type"):
        OpSpec("attention", 28, 40, 40)


@pytest.mark.parametrize(
    "spec",
    [
        OpSpec("mbconv", 14, 16, 16, kernel=5, expand=6, se=True, act="hswish", skip=True),
        OpSpec("mbconv", 15, 16, 24, kernel=7, expand=3, stride=2, groups=2),
        OpSpec("mbconv", 8, 16, 8, kernel=3, expand=1),
        OpSpec("conv", 32, 3, 16, kernel=3, stride=2),
        OpSpec("linear", 7, 32, 10),
        OpSpec("pool", 7, 32, 32),
        OpSpec("zero", 8, 16, 16, skip=True),
        OpSpec("zero", 8, 16, 24, stride=2),
    ],
)
def test_modules_produce_the_spec_shape(spec):
    out = build_op(spec)(example_input(spec))
    if spec.type in ("linear",):
        assert out.shape == (1, spec.cout)
    else:
        assert out.shape == (1, spec.cout, spec.output_hw, spec.output_hw)
    assert torch.isfinite(out).all()


def test_cost_features_grow_with_width():
    narrow = OpSpec("mbconv", 28, 40, 40, kernel=5, expand=6, skip=True)
    wide = narrow.replace(cin=80, cout=80)
    assert wide.macs > 3 * narrow.macs
    assert wide.params > 3 * narrow.params
    assert wide.activation_bytes == 2 * narrow.activation_bytes
    conv_params = sum(p.numel() for p in build_op(narrow).parameters())
    assert narrow.params == conv_params


@pytest.mark.parametrize(
    "spec",
    [
        OpSpec("zero", 14, 40, 40, skip=True),
        OpSpec("zero", 14, 40, 80, stride=2),
        OpSpec("conv", 32, 3, 16, kernel=3, act="hswish"),
        OpSpec("conv", 7, 160, 960, act="hswish"),
    ],
    ids=lambda s: s.key,
)
def test_latkit_only_fields_survive_the_key(spec):
    assert from_key(spec.key) == spec


def test_ofa_blocks_without_h_swish_run_relu_as_in_its_mobilenet_v3():
    key = "expanded_conv-input:56x56x32-output:28x28x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0"
    spec = from_key(key)
    assert spec.act == "relu" and spec.key.endswith("-idskip:0-se:1-relu:1")
    relu6 = spec.replace(act="relu6")
    assert to_key(relu6, "ofa").endswith("-se:1-hs:0-relu6:1")
    assert from_key(to_key(relu6, "ofa")) == relu6


@pytest.mark.parametrize(
    "spec",
    [
        OpSpec("irf", 56, 24, 24, kernel=3, expand=1, groups=2, act="relu", skip=True),
        OpSpec("irf", 28, 32, 64, kernel=5, expand=6, stride=2, act="relu"),
        OpSpec("conv", 56, 24, 32, stride=2, act="relu"),
    ],
    ids=lambda s: s.key,
)
def test_fbnet_ops_have_their_own_keys_and_costs(spec):
    assert from_key(spec.key) == spec
    module = build_op(spec)
    assert spec.params == sum(p.numel() for p in module.parameters())
    if spec.type == "irf":
        assert spec.key.startswith("IRFBlock-") and module.expand is not None
        assert (module.shuffle is not None) == (spec.groups > 1) == spec.shuffle


def test_fbnet_shuffle_is_shufflenets_channel_shuffle():
    spec = OpSpec("irf", 4, 8, 8, expand=1, groups=2, act="relu", skip=True)
    shuffle = build_op(spec).shuffle
    x = torch.arange(8.0).reshape(1, 8, 1, 1)
    # ShuffleNet: view as (groups, channels per group), transpose, flatten
    want = x.view(1, 2, 4, 1, 1).transpose(1, 2).reshape(1, 8, 1, 1)
    assert torch.equal(shuffle(x), want)


def test_grouped_blocks_need_divisible_channels():
    with pytest.raises(LatkitError, match="groups=2 must divide cin=5"):
        OpSpec("irf", 8, 5, 6, expand=2, groups=2)
    with pytest.raises(LatkitError, match="op act"):
        OpSpec("conv", 8, 3, 8, act="gelu")


EFFNET_B0_BLOCK = OpSpec(
    "mbconv", 56, 24, 24, kernel=3, expand=6, se=True, act="swish", skip=True, se_style="effnet"
)


@pytest.mark.parametrize(
    ("spec", "dialect", "key"),
    [
        (
            EFFNET_B0_BLOCK,
            "proxylessnas",
            "expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:3-stride:1-idskip:1"
            "-se:1-sestyle:effnet-swish:1",
        ),
        (
            EFFNET_B0_BLOCK,
            "ofa",
            "expanded_conv-input:56x56x24-output:56x56x24-expand:144-kernel:3-stride:1-idskip:1"
            "-se:1-sestyle:effnet-hs:0-swish:1",
        ),
        (
            EFFNET_B0_BLOCK.replace(act="relu"),  # MnasNet-A1
            "proxylessnas",
            "expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:3-stride:1-idskip:1"
            "-se:1-sestyle:effnet-relu:1",
        ),
        (
            EFFNET_B0_BLOCK.replace(se_style="mbv3"),
            "proxylessnas",
            "expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:3-stride:1-idskip:1"
            "-se:1-swish:1",
        ),
        (
            OpSpec("conv", 224, 3, 32, stride=2, kernel=3, act="swish"),
            "proxylessnas",
            "Conv-input:224x224x3-output:112x112x32-swish:1",
        ),
        (
            OpSpec("conv", 7, 320, 1280, act="swish"),
            "ofa",
            "Conv_1-input:7x7x320-output:7x7x1280-swish:1",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_swish_and_effnet_se_keys_are_spelled_and_detected(spec, dialect, key):
    assert to_key(spec, dialect) == key
    assert detect_dialect(key) == dialect or spec.type == "conv"  # conv keys: both dialects
    assert from_key(key) == from_key(key, dialect) == spec


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([1, 2, 4, 8, 14]),
    st.sampled_from([16, 24, 40, 80]),
    st.sampled_from(["conv", "mbconv", "irf"]),
    st.sampled_from(["proxylessnas", "ofa"]),
)
def test_every_swish_op_round_trips(hw, channels, kind, dialect):
    expand = 1.0 if kind == "conv" else 4.0
    spec = OpSpec(kind, hw, channels, channels, kernel=3, expand=expand, act="swish")
    assert from_key(to_key(spec, dialect)) == spec
    if kind != "conv":
        effnet = spec.replace(se=True, se_style="effnet", skip=True)
        assert from_key(to_key(effnet, dialect)) == effnet


def test_se_style_is_checked_and_only_blocks_with_se_have_one():
    with pytest.raises(LatkitError, match="op se_style 'resnet' is not one of mbv3, effnet"):
        OpSpec("mbconv", 8, 16, 16, se=True, se_style="resnet")
    with pytest.raises(LatkitError, match="needs a block type with se=True"):
        OpSpec("mbconv", 8, 16, 16, se_style="effnet")
    with pytest.raises(LatkitError, match="needs a block type with se=True"):
        OpSpec("conv", 8, 16, 16, se=True, se_style="effnet")
    assert OpSpec("conv", 8, 3, 16).se_style == "mbv3"
    with pytest.raises(LatkitError, match="se_style"):
        from_key(
            "expanded_conv-input:8x8x16-output:8x8x16-expand:6-kernel:3-stride:1-idskip:1"
            "-se:0-sestyle:effnet"
        )
    with pytest.raises(LatkitError, match="round-trip"):  # the default is never spelled
        from_key(
            "expanded_conv-input:8x8x16-output:8x8x16-expand:6-kernel:3-stride:1-idskip:1"
            "-se:1-sestyle:mbv3"
        )
    assert OpSpec.from_dict({**EFFNET_B0_BLOCK.to_dict(), "se_style": "effnet"}) == EFFNET_B0_BLOCK
    assert OpSpec.from_dict({"type": "conv", "input_hw": 8, "cin": 3, "cout": 8}).se_style == "mbv3"


@pytest.mark.parametrize(
    "spec",
    [
        EFFNET_B0_BLOCK,
        EFFNET_B0_BLOCK.replace(act="relu"),
        EFFNET_B0_BLOCK.replace(se_style="mbv3"),
        OpSpec("mbconv", 16, 32, 16, kernel=3, expand=1, se=True, act="swish", se_style="effnet"),
        OpSpec("mbconv", 14, 40, 80, kernel=5, expand=6, stride=2, se=True, se_style="effnet"),
        OpSpec("mbconv", 4, 2, 2, expand=3, se=True, act="swish", se_style="effnet"),
        OpSpec("irf", 8, 16, 16, expand=3, groups=2, se=True, act="swish", se_style="effnet"),
        OpSpec("irf", 8, 16, 24, kernel=5, expand=1, act="swish"),
        OpSpec("conv", 32, 3, 16, kernel=3, stride=2, act="swish"),
    ],
    ids=lambda s: s.key,
)
def test_new_combinations_build_with_the_params_the_spec_counts(spec):
    module = build_op(spec)
    assert spec.params == sum(p.numel() for p in module.parameters())
    x = example_input(spec)
    out = module(x)
    assert out.shape == (1, spec.cout, spec.output_hw, spec.output_hw)
    assert torch.isfinite(out).all()
    if spec.se:
        assert module.se.reduce.out_channels == spec.se_reduced
        assert spec.macs > spec.replace(se=False, se_style="mbv3").macs


def test_effnet_se_reduces_from_the_block_input_with_its_act_and_a_sigmoid_gate():
    spec = OpSpec("mbconv", 6, 40, 40, kernel=3, expand=6, se=True, act="swish", se_style="effnet")
    se = build_op(spec).se
    assert (se.reduce.in_channels, se.reduce.out_channels) == (240, 10)  # int(40 * 0.25)
    assert OpSpec("mbconv", 6, 3, 3, expand=6, se=True, se_style="effnet").se_reduced == 1
    x = torch.randn(2, 240, 6, 6)
    with torch.no_grad():
        z = torch.nn.functional.conv2d(
            x.mean((2, 3), keepdim=True), se.reduce.weight, se.reduce.bias
        )
        z = torch.nn.functional.conv2d(z * torch.sigmoid(z), se.expand.weight, se.expand.bias)
        assert torch.allclose(se(x), x * torch.sigmoid(z), atol=1e-6)
    mbv3 = build_op(spec.replace(se_style="mbv3")).se
    assert mbv3.reduce.out_channels == 64  # once-for-all: make_divisible(240 // 4)
    assert isinstance(mbv3.gate, torch.nn.Hardsigmoid) and isinstance(mbv3.act, torch.nn.ReLU)


def test_effnet_se_costs_count_its_own_bottleneck():
    effnet = OpSpec("mbconv", 14, 40, 40, kernel=3, expand=6, se=True, se_style="effnet")
    mbv3, plain = effnet.replace(se_style="mbv3"), effnet.replace(se=False, se_style="mbv3")
    assert effnet.macs - plain.macs == 2 * 240 * 10
    assert mbv3.macs - plain.macs == 2 * 240 * 64
    assert effnet.params - plain.params == 2 * 240 * 10 + 10 + 240
    assert mbv3.activation_bytes - effnet.activation_bytes == 4 * (64 - 10)
    assert effnet.activation_bytes > plain.activation_bytes
