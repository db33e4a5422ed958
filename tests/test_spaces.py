"""Search spaces enumerate the ops of the real ProxylessNAS table and build the published nets."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from latkit.errors import LatkitError
from latkit.modules import build_network, example_input
from latkit.ops import from_key, to_key
from latkit.spaces import Network, SearchSpace, builtin_spaces, load_arch, load_space


def test_builtin_spaces_match_design():
    spaces = builtin_spaces()
    mobile, tiny = spaces["proxyless-mobile"], spaces["proxyless-tiny"]
    assert [s.width for s in mobile.stages] == [24, 40, 80, 96, 192, 320]
    assert [s.blocks for s in mobile.stages] == [4, 4, 4, 4, 4, 1]
    assert [s.stride for s in mobile.stages] == [2, 2, 2, 1, 2, 1]
    assert len(mobile.layers()) == 21
    # zero only where stride 1 and cin == cout: the 3 later blocks of each 4-block stage
    assert sum(len(layer.candidates) == 7 for layer in mobile.layers()) == 15
    (stem, first), (mix, logits) = mobile.fixed_ops()
    assert (stem.cin, stem.cout, stem.stride, first.cout, first.expand) == (3, 32, 2, 16, 1.0)
    assert (mix.cin, mix.cout, logits.cin, logits.cout) == (320, 1280, 1280, 1000)
    assert tiny.input_hw == 32 and [s.width for s in tiny.stages] == [24, 32, 64]
    assert tiny.fixed_ops()[1][1].cout == 10


def test_mobile_space_covers_the_published_phone_table(published):
    lut = yaml.safe_load((published / "luts/proxylessnas/mobile_trim.yaml").read_text())
    enumerated = {op.key for op in load_space("proxyless-mobile").distinct_ops()}
    table = {key for key in lut if key.startswith("expanded_conv")}
    # The table also holds the first block at kernels 5 and 7: the ProxylessNAS authors timed
    # those while the first block was still searchable. DESIGN fixes it at MBConv1 k3, so these
    # two keys are the only ones the space does not enumerate.
    fixed_first_block_variants = {
        "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:5-stride:1-idskip:0",
        "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:7-stride:1-idskip:0",
    }
    assert table - enumerated == fixed_first_block_variants
    # Everything else in the table, including stem, feature mix and logits, is enumerated.
    assert set(lut) - fixed_first_block_variants <= enumerated
    assert len(enumerated) == 70


@pytest.mark.parametrize(
    "name", ["proxyless_mobile", "proxyless_cpu", "proxyless_gpu", "proxyless_mobile_14"]
)
def test_published_configs_build_and_round_trip(published, name):
    net = Network.load(published / f"archs/proxylessnas/{name}.config")
    assert len(net.ops) == 25
    assert Network.from_config(net.to_config()) == Network(net.ops, "network")
    out = build_network(net.ops)(example_input(net.ops[0]))
    assert out.shape == (1, 1000)


def test_sampled_architectures_are_seeded_and_chain():
    space = load_space("proxyless-tiny")
    first = space.sample_networks(5, seed=3)
    assert [a for a, _ in first] == [a for a, _ in space.sample_networks(5, seed=3)]
    for arch, net in first:
        assert space.arch_of(net) == arch
        assert build_network(net.ops)(example_input(net.ops[0])).shape == (1, 10)
    arch = space.sample(random.Random(0))
    config = space.network(arch).to_config()
    assert Network.from_config(json.loads(json.dumps(config))).ops == space.network(arch).ops


def test_space_yaml_file(tmp_path):
    data = load_space("proxyless-tiny").to_dict() | {"name": "mine"}
    data["stages"] = [{"width": 8, "blocks": 1, "stride": 2}]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    space = load_space(path)
    assert space.name == "mine" and len(space.layers()) == 1
    del data["head"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LatkitError, match="missing field 'head'"):
        load_space(path)
    with pytest.raises(LatkitError, match="neither a built-in"):
        load_space(tmp_path / "nope.yaml")


def test_bad_net_config(tmp_path):
    path = tmp_path / "net.config"
    path.write_text(json.dumps({"first_conv": {}}))
    with pytest.raises(LatkitError, match="net.config"):
        Network.load(path)


def test_fbnet_spaces_follow_the_published_plan():
    """FBNet's Table 1 and 2 as HW-NAS-Bench's FBNet model builds them (see the YAML files)."""
    fbnet, cifar = load_space("fbnet"), load_space("fbnet-cifar")
    for space in (fbnet, cifar):
        layers = space.layers()
        assert len(layers) == 22 and [s.width for s in space.stages] == [
            16, 24, 32, 64, 112, 184, 352,
        ]  # fmt: skip
        assert layers[2].names == (
            "k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "zero",
        )  # fmt: skip
        # `skip` is the identity where the shape stays, a strided 1x1 conv where it changes
        changing = layers[1].candidates[8]
        assert (changing.type, changing.kernel, changing.stride, changing.act) == (
            "conv", 1, space.stages[1].stride, "relu",
        )  # fmt: skip
        assert all(op.act == "relu" for layer in layers for op in layer.candidates[:8])
    (stem,), (mix, logits) = fbnet.fixed_ops()
    assert (stem.input_hw, stem.stride, stem.cout, mix.cout, logits.cout) == (
        224,
        2,
        16,
        1984,
        1000,
    )
    (stem,), (mix, logits) = cifar.fixed_ops()
    assert (stem.input_hw, stem.stride, stem.cout, mix.cout, logits.cout) == (32, 1, 16, 1504, 100)
    assert [s.stride for s in fbnet.stages] == [1, 2, 2, 2, 1, 2, 1]
    assert [s.stride for s in cifar.stages] == [1, 1, 2, 2, 1, 2, 1]
    # the weights HW-NAS-Bench's FBNet_Infer has for this op_idx_list (ImageNet, CIFAR-100)
    arch = [2, 1, 4, 1, 7, 7, 8, 3, 3, 4, 2, 5, 0, 7, 1, 6, 6, 2, 7, 5, 3, 4]
    for space, weights in ((fbnet, 4_164_792), (cifar, 2_160_372)):
        net = build_network(space.network(arch).ops)
        assert sum(p.numel() for p in net.parameters()) == weights


def test_ofa_space_enumerates_exactly_the_note10_tables(published):
    """At each of the 17 resolutions its tables cover, the space's ops are the table's keys."""
    space = load_space("ofa-mbv3")
    assert space.input_sizes == tuple(range(128, 225, 4))
    for path in sorted((published / "luts/ofa-note10").glob("*_lookup_table.yaml")):
        hw = int(path.name.split("_")[0])
        table = {from_key(k, "ofa") for k in yaml.safe_load(path.read_text())}
        assert table == set(space.at_resolution(hw).distinct_ops()), path.name


def test_ofa_subnet_choices_build_the_network_its_tutorial_times(published, tmp_path):
    """once-for-all's tutorial looks up each block of {ks, e, d, r} in the Note10 table: every op
    of latkit's network for the same choices is a key of that table."""
    rng = random.Random(0)
    spec = {
        "ks": [rng.choice([3, 5, 7]) for _ in range(20)],
        "e": [rng.choice([3, 4, 6]) for _ in range(20)],
        "d": [2, 3, 4, 3, 2],
        "r": [176],
    }
    path = tmp_path / "subnet.json"
    path.write_text(json.dumps(spec))
    net = load_arch(path)
    table = yaml.safe_load((published / "luts/ofa-note10/176_lookup_table.yaml").read_text())
    timed = [op for op in net.ops if op.type != "zero"]
    assert all(to_key(op, "ofa") in table for op in timed)
    assert len(timed) == 2 + sum(spec["d"]) + 4
    space = load_space("ofa-mbv3")
    arch = space.arch_of(net)
    blocks = [op for op in net.ops if op.type == "mbconv"][1:]
    assert [op.kernel for op in blocks] == [
        k for i, k in enumerate(spec["ks"]) if i % 4 < spec["d"][i // 4]
    ]
    assert space.network(arch, input_hw=176).ops == net.ops
    # its MobileNetV3 config round-trips, and is what once-for-all's config loader expects
    config = net.to_config()
    assert config["name"] == "MobileNetV3" and config["blocks"][1]["conv"]["name"] == "MBConvLayer"
    assert Network.from_config(json.loads(json.dumps(config))).ops == net.ops
    with pytest.raises(LatkitError, match="depth 1 of stage 0"):
        space.ofa_network({**spec, "d": [1, 3, 4, 3, 2]})
    with pytest.raises(LatkitError, match="no input size 100"):
        space.ofa_network({**spec, "r": [100]})


def test_ofa_mobilenet_v3_config_in_its_own_format():
    """A config as once-for-all's `get_active_net_config` writes it (all of its fields)."""
    bn = {"momentum": 0.1, "eps": 1e-05}

    def conv(cin, cout, kernel, stride, act, use_bn=True):
        return {
            "name": "ConvLayer", "kernel_size": kernel, "stride": stride, "dilation": 1,
            "groups": 1, "bias": False, "has_shuffle": False, "use_se": False,
            "in_channels": cin, "out_channels": cout, "use_bn": use_bn, "act_func": act,
            "dropout_rate": 0, "ops_order": "weight_bn_act",
        }  # fmt: skip

    def block(cin, cout, k, s, e, act, se, shortcut):
        mb = {
            "name": "MBConvLayer", "in_channels": cin, "out_channels": cout, "kernel_size": k,
            "stride": s, "expand_ratio": e, "mid_channels": None if e == 1 else round(cin * e),
            "act_func": act, "use_se": se, "groups": None,
        }  # fmt: skip
        identity = {"name": "IdentityLayer", "in_channels": cin, "out_channels": cout}
        return {"name": "ResidualBlock", "conv": mb, "shortcut": identity if shortcut else None}

    config = {
        "name": "MobileNetV3",
        "bn": bn,
        "first_conv": conv(3, 24, 3, 2, "h_swish"),
        "blocks": [
            block(24, 24, 3, 1, 1, "relu", False, True),
            block(24, 32, 5, 2, 4, "relu", False, False),
            block(32, 32, 7, 1, 3, "relu", False, True),
        ],
        "final_expand_layer": conv(32, 1152, 1, 1, "h_swish"),
        "feature_mix_layer": conv(1152, 1536, 1, 1, "h_swish", use_bn=False),
        "classifier": {
            "name": "LinearLayer",
            "in_features": 1536,
            "out_features": 1000,
            "bias": True,
            "use_bn": False,
            "act_func": None,
            "dropout_rate": 0.1,
            "ops_order": "weight_bn_act",
        },  # fmt: skip
    }
    net = Network.from_config(config, input_hw=160)
    keys = [to_key(op, "ofa") for op in net.ops]
    assert keys[:3] == [
        "Conv-input:160x160x3-output:80x80x24",
        "expanded_conv-input:80x80x24-output:80x80x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0",
        "expanded_conv-input:80x80x24-output:40x40x32-expand:96-kernel:5-stride:2-idskip:0-se:0-hs:0",
    ]
    assert keys[-4:] == [
        "Conv_1-input:40x40x32-output:40x40x1152",
        "AvgPool2D-input:40x40x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
    ]
    bad = json.loads(json.dumps(config))
    bad["blocks"][1]["conv"]["groups"] = 2
    with pytest.raises(LatkitError, match="depthwise"):
        Network.from_config(bad)


def test_elastic_spaces_sample_depth_and_resolution_like_once_for_all():
    space = load_space("ofa-mbv3")
    sampled = space.sample_networks(12, seed=4)
    assert len({net.ops[0].input_hw for _, net in sampled}) > 3
    for arch, net in sampled:
        assert space.arch_of(net) == arch and net.name.endswith(f"@{net.ops[0].input_hw}")
        layers = space.at_resolution(net.ops[0].input_hw).layers()
        for stage in range(5):
            identity = [
                layers[i].candidates[arch[i]].type == "zero"
                for i in range(4 * stage, 4 * stage + 4)
            ]
            depth = identity.index(True) if True in identity else 4
            assert depth >= 2 and not any(identity[:depth]) and all(identity[depth:])
    # the first two blocks of a stage always compute; the last two may be the identity
    assert [len(layer.candidates) for layer in space.layers()[:4]] == [9, 9, 10, 10]


@pytest.mark.parametrize("name", ["fbnet-cifar", "ofa-mbv3"])
def test_new_space_networks_round_trip_through_their_configs(name):
    space = load_space(name)
    for arch, net in space.sample_networks(3, seed=1):
        config = json.loads(json.dumps(net.to_config()))
        assert Network.from_config(config).ops == net.ops
        assert space.arch_of(Network.from_config(config)) == arch


def test_space_yaml_errors_name_the_field(tmp_path):
    data = load_space("fbnet-cifar").to_dict()
    assert SearchSpace.from_dict(data) == load_space("fbnet-cifar")
    for change, message in (
        ({"candidates": [{"kernel": 3, "colour": 1}]}, "candidate field"),
        ({"candidates": ["identity"]}, "'identity' is not one of zero, skip"),
        ({"block": "resnet"}, "block 'resnet'"),
        ({"act": "gelu"}, "act 'gelu'"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(data | change))
        with pytest.raises(LatkitError, match=message):
            load_space(path)


def test_load_arch_says_what_it_reads(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"ks": [3], "e": [3], "d": [2]}))
    with pytest.raises(LatkitError, match="x.json: once-for-all subnet has 1 depths"):
        load_arch(path)
    path.write_text("[1, 2]")
    with pytest.raises(LatkitError, match="one JSON object"):
        load_arch(path)


def test_the_search_builds_and_prices_a_supernet_of_a_new_space():
    """The search's interface (layers, fixed ops, build_op) is all a new space needs."""
    import torch

    from latkit.predictors import LatencyPredictor
    from latkit.search.latency import LatencyTable
    from latkit.search.supernet import SuperNet

    space = load_space("fbnet-cifar")
    supernet = SuperNet(space, seed=0)
    supernet.sample("weights")
    out = supernet(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 100) and len(supernet.mixed) == 22
    ops = space.distinct_ops()
    predictor = LatencyPredictor(family="additive").fit(ops, [1e-6 * op.macs + 0.01 for op in ops])
    table = LatencyTable.from_predictor(predictor, space)
    assert table.fastest()[1] < table.slowest()[1]


def test_a_space_of_efficientnet_blocks_round_trips_through_its_files():
    """Swish everywhere and EfficientNet's SE in the stages that have one: the space file, the
    ops, and the networks' configs all keep both."""
    data = load_space("proxyless-tiny").to_dict() | {"act": "swish"}
    data["stages"] = [stage | {"se": True, "se_style": "effnet"} for stage in data["stages"]]
    space = SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(data)))
    assert SearchSpace.from_dict(space.to_dict()) == space
    blocks = [op for layer in space.layers() for op in layer.candidates if op.type == "mbconv"]
    assert blocks and all(op.act == "swish" and op.se_style == "effnet" for op in blocks)
    assert space.layers()[0].names[0] == "3x3_MBConv3_SE_SWISH"
    for arch, net in space.sample_networks(2, seed=0):
        config = json.loads(json.dumps(net.to_config()))
        assert Network.from_config(config).ops == net.ops
        assert space.arch_of(Network.from_config(config)) == arch
    data["stages"][0] = data["stages"][0] | {"se": False}
    with pytest.raises(LatkitError, match="se_style 'effnet' needs a block type with se=True"):
        SearchSpace.from_dict(data)
