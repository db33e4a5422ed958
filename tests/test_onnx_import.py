"""Bring your own network: torch modules and ONNX files mapped to op specs, exactly or refused,
then predicted, profiled and timed from the command line and from Python.

Real torch exports (the TorchScript exporter, eval mode), real onnx shape inference, real
onnxruntime timings into a real SQLite store; no mocks.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import pytest
import torch
from cli_support import fail
from onnx import helper
from torch import nn
from typer.testing import CliRunner

from latkit.cli import app
from latkit.errors import LatkitError
from latkit.graphs import export_module, map_onnx, read_model, require_mapped, trace_onnx
from latkit.ops import OpSpec, se_channels
from latkit.store import MeasurementStore
from tests.conftest import DATA, write_device

runner = CliRunner()
Act = type[nn.Module]


# --- networks, written as their papers' code writes them ----------------------------------------


def conv_bn(cin: int, cout: int, k: int, s: int = 1, act: Act | None = nn.ReLU6, **conv):
    """Conv (no bias), batch norm (folded away by the export), activation."""
    conv.setdefault("padding", k // 2 * conv.get("dilation", 1))
    layers = [nn.Conv2d(cin, cout, k, s, bias=False, **conv), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act()] if act else []))


class SE(nn.Module):
    def __init__(self, channels: int, reduced: int, act: Act, gate: Act) -> None:
        super().__init__()
        self.reduce, self.act = nn.Conv2d(channels, reduced, 1), act()
        self.expand, self.gate = nn.Conv2d(reduced, channels, 1), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))


class Block(nn.Module):
    """[1x1 expand] -> depthwise kxk -> [SE] -> 1x1 project -> [+ input]."""

    def __init__(self, cin, mid, cout, k, s=1, act=nn.ReLU6, se=None, keep=False, **dw):
        super().__init__()
        self.expand = conv_bn(cin, mid, 1, act=act) if keep or mid != cin else None
        self.dw = conv_bn(mid, mid, k, s, act=act, groups=dw.pop("groups", mid), **dw)
        self.se = se
        self.project = conv_bn(mid, cout, 1, act=None)
        self.skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dw(self.expand(x) if self.expand is not None else x)
        out = self.project(self.se(out) if self.se is not None else out)
        return out + x if self.skip else out


def head(cin: int, cout: int, act: Act, classes: int = 10) -> list[nn.Module]:
    """1x1 conv, pool, flatten, dropout (gone in an eval export), classifier."""
    pooled = [conv_bn(cin, cout, 1, act=act), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
    return [*pooled, nn.Dropout(0.2), nn.Linear(cout, classes)]


def mobilenet_v2_like() -> nn.Module:
    """ReLU6, no SE; a ratio-1 block without expansion, and FBNet's with one (irf)."""
    return nn.Sequential(
        conv_bn(3, 16, 3, 2),
        Block(16, 16, 8, 3),
        Block(8, 48, 16, 3, 2),
        Block(16, 96, 16, 5),
        Block(16, 16, 16, 3, keep=True),
        *head(16, 64, nn.ReLU6),
    )


MOBILENET_V2_OPS = [
    OpSpec("conv", 64, 3, 16, stride=2, kernel=3),
    OpSpec("mbconv", 32, 16, 8, kernel=3),
    OpSpec("mbconv", 32, 8, 16, stride=2, kernel=3, expand=6.0),
    OpSpec("mbconv", 16, 16, 16, kernel=5, expand=6.0, skip=True),
    OpSpec("irf", 16, 16, 16, kernel=3, skip=True),
    OpSpec("conv", 16, 16, 64),
    OpSpec("linear", 16, 64, 10),
]


def efficientnet_like() -> nn.Module:
    """Swish everywhere, EfficientNet's SE (a quarter of the block's input, swish, sigmoid)."""

    def se(cin: int, mid: int) -> SE:
        return SE(mid, max(1, int(cin * 0.25)), nn.SiLU, nn.Sigmoid)

    return nn.Sequential(
        conv_bn(3, 16, 3, 2, nn.SiLU),
        Block(16, 96, 24, 5, 2, nn.SiLU, se(16, 96)),
        Block(24, 144, 24, 3, 1, nn.SiLU, se(24, 144)),
        *head(24, 64, nn.SiLU),
    )


def effnet_block(hw: int, cin: int, cout: int, k: int, s: int) -> OpSpec:
    return OpSpec(
        "mbconv", hw, cin, cout, stride=s, kernel=k, expand=6.0, se=True, act="swish",
        skip=s == 1 and cin == cout, se_style="effnet",
    )  # fmt: skip


EFFICIENTNET_OPS = [
    OpSpec("conv", 32, 3, 16, stride=2, kernel=3, act="swish"),
    effnet_block(16, 16, 24, 5, 2),
    effnet_block(8, 24, 24, 3, 1),
    OpSpec("conv", 8, 24, 64, act="swish"),
    OpSpec("linear", 8, 64, 10),
]


def mobilenet_v3_like() -> nn.Module:
    """h-swish and ReLU blocks, MobileNetV3's SE (mid/4 to 8, ReLU, hard sigmoid), and its head:
    pool, then dense 96 -> 128 with h-swish and the classifier on 1x1 features."""
    return nn.Sequential(
        conv_bn(3, 16, 3, 2, nn.Hardswish),
        Block(16, 64, 24, 3, 2, nn.ReLU),
        Block(24, 72, 24, 5, 1, nn.Hardswish, SE(72, se_channels(72), nn.ReLU, nn.Hardsigmoid)),
        conv_bn(24, 96, 1, act=nn.Hardswish),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(96, 128),
        nn.Hardswish(),
        nn.Linear(128, 10),
    )


MOBILENET_V3_OPS = [
    OpSpec("conv", 32, 3, 16, stride=2, kernel=3, act="hswish"),
    OpSpec("mbconv", 16, 16, 24, stride=2, kernel=3, expand=4.0, act="relu"),
    OpSpec("mbconv", 8, 24, 24, kernel=5, expand=3.0, se=True, act="hswish", skip=True),
    OpSpec("conv", 8, 24, 96, act="hswish"),
    OpSpec("pool", 8, 96, 96),
    OpSpec("conv", 1, 96, 128, act="hswish"),
    OpSpec("linear", 1, 128, 10),
]


def to_onnx(model: nn.Module, hw: int, opset: int = 17, **export) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.randn(1, 3, hw, hw),), buffer, dynamo=False,
            opset_version=opset, input_names=["input"], **export,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def graph_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of the graph's convs and dense layers, from inferred shapes."""
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for info in (*model.graph.value_info, *model.graph.output):
        shapes[info.name] = [d.dim_value for d in info.type.tensor_type.shape.dim]
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            _, cin_per_group, kh, kw = shapes[node.input[1]]
            n, cout, h, w = shapes[node.output[0]]
            macs += h * w * cout * cin_per_group * kh * kw
        elif node.op_type == "Gemm":
            macs += shapes[node.input[1]][0] * shapes[node.input[1]][1]
    return macs


# --- mapping -------------------------------------------------------------------------------------

NETWORKS = {
    "mobilenet_v2_like": (mobilenet_v2_like, 64, MOBILENET_V2_OPS),
    "efficientnet_like": (efficientnet_like, 32, EFFICIENTNET_OPS),
    "mobilenet_v3_like": (mobilenet_v3_like, 32, MOBILENET_V3_OPS),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_map_to_exactly_their_op_specs_and_macs(name):
    make, hw, expected = NETWORKS[name]
    model = to_onnx(make(), hw)
    mapped = map_onnx(model, name=name)
    assert list(mapped.ops) == expected
    assert mapped.unmapped == () and mapped.nodes_mapped == mapped.nodes_total > len(expected)
    assert sum(op.macs for op in mapped.ops) == graph_macs(model)


def test_older_opsets_spell_hswish_as_x_times_hard_sigmoid():
    model = to_onnx(mobilenet_v3_like(), 32, opset=13)
    assert "HardSigmoid" in {n.op_type for n in model.graph.node}
    assert list(map_onnx(model).ops) == MOBILENET_V3_OPS


def test_a_module_is_exported_in_eval_mode_and_left_in_its_own_mode():
    model = mobilenet_v2_like().train()
    mapped = read_model(model, (2, 3, 64, 64))
    assert model.training and all(m.training for m in model.modules())
    assert list(mapped.ops) == [op.replace(batch=2) for op in MOBILENET_V2_OPS]
    assert {n.op_type for n in export_module(model, (1, 3, 64, 64)).graph.node}.isdisjoint(
        {"BatchNormalization", "Dropout"}
    )


def test_latkits_own_exports_map_back_to_their_op_specs():
    """Every op type but zero as latkit builds and exports it: FBNet's grouped blocks with their
    channel shuffle, grouped MBConvs, both SE styles, the pool and the 1x1 head."""
    from latkit.profilers.onnx_export import export_onnx

    ops = [
        OpSpec("conv", 32, 3, 16, stride=2, kernel=3, act="swish"),
        OpSpec("irf", 16, 16, 16, kernel=3, groups=2, skip=True, act="relu"),
        OpSpec("irf", 16, 16, 24, stride=2, kernel=5, expand=3.0, groups=2, act="relu"),
        OpSpec("mbconv", 8, 24, 24, kernel=3, expand=4.0, groups=2, skip=True),
        OpSpec("mbconv", 8, 24, 32, kernel=5, expand=6.0, se=True, act="swish", se_style="effnet"),
        OpSpec("mbconv", 8, 32, 32, kernel=3, expand=3.0, se=True, act="hswish", skip=True),
        OpSpec("conv", 8, 32, 64, act="hswish"),
        OpSpec("pool", 8, 64, 64),
        OpSpec("conv", 1, 64, 128, act="hswish"),
        OpSpec("linear", 1, 128, 10),
    ]
    mapped = read_model(export_onnx(ops))
    assert list(mapped.ops) == ops and mapped.unmapped == ()


@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_mean_and_matmul_plus_add_classify(opset):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, 2, 1)
            self.weight, self.bias = nn.Parameter(torch.randn(8, 10)), nn.Parameter(torch.randn(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x)).mean((2, 3)) @ self.weight + self.bias

    mapped = map_onnx(to_onnx(Net(), 16, opset=opset))
    assert list(mapped.ops) == [
        OpSpec("conv", 16, 3, 8, stride=2, kernel=3, act="relu"),
        OpSpec("linear", 8, 8, 10),
    ]


def _listed(mapped, *names: str) -> dict[str, str]:
    """The unmapped entries of `names`, each of which must be listed."""
    entries = {entry.split(" (")[0]: entry for entry in mapped.unmapped}
    missing = [n for n in names if n not in entries]
    assert not missing, f"{missing} not in {mapped.unmapped}"
    return {n: entries[n] for n in names}


def test_a_dilated_block_is_refused_with_every_node_of_it():
    model = to_onnx(nn.Sequential(conv_bn(3, 16, 3, 2), Block(16, 64, 16, 3, dilation=2)), 32)
    mapped = map_onnx(model)
    assert list(mapped.ops) == [OpSpec("conv", 32, 3, 16, stride=2, kernel=3)]
    block = [
        n.name for n in model.graph.node if n.name.startswith("/1/") and n.op_type != "Constant"
    ]
    assert len(block) == 6  # expand conv + act, depthwise conv + act, project conv, Add
    listed = _listed(mapped, *block)
    assert "dilation 2x2" in listed["/1/dw/dw.0/Conv"]
    assert mapped.nodes_total == 8 and mapped.nodes_mapped == 2 and mapped.share_mapped == 0.25


def test_asymmetric_padding_is_refused():
    model = to_onnx(nn.Sequential(conv_bn(3, 16, 3, 2), conv_bn(16, 32, 1)), 32)
    stem = model.graph.node[0]
    del stem.attribute[:]  # TensorFlow's SAME at stride 2: nothing before, one after
    stem.attribute.extend([helper.make_attribute("pads", [0, 0, 1, 1])])
    stem.attribute.extend([helper.make_attribute("strides", [2, 2])])
    mapped = map_onnx(model)
    assert "padding [0, 0, 1, 1] is not 1 on every side" in _listed(mapped, stem.name)[stem.name]
    assert list(mapped.ops) == [OpSpec("conv", 16, 16, 32)]


def test_grouped_convs_that_are_not_depthwise_are_refused():
    plain = map_onnx(to_onnx(nn.Sequential(conv_bn(3, 16, 3, 2), conv_bn(16, 32, 3, groups=4)), 32))
    assert "grouped (4 groups)" in _listed(plain, "/1/1.0/Conv")["/1/1.0/Conv"]
    in_block = map_onnx(
        to_onnx(nn.Sequential(conv_bn(3, 16, 3, 2), Block(16, 64, 16, 3, groups=32)), 32)
    )
    assert "not depthwise" in _listed(in_block, "/1/dw/dw.0/Conv", "/1/Add")["/1/Add"]


def test_an_unknown_op_mid_network_is_listed_and_the_rest_maps():
    class Softmax(nn.Module):
        def forward(self, x):
            return torch.softmax(x, 1)

    model = to_onnx(nn.Sequential(conv_bn(3, 16, 3, 2), Softmax(), *head(16, 32, nn.ReLU6)), 32)
    mapped = map_onnx(model)
    assert "Softmax" in _listed(mapped, "/1/Softmax")["/1/Softmax"]
    assert [op.type for op in mapped.ops] == ["conv", "conv", "linear"]
    with pytest.raises(LatkitError, match=r"net: 1 of \d+ nodes .*/1/Softmax \(Softmax\)"):
        require_mapped(mapped, False, "net")
    assert require_mapped(mapped, True, "net") is mapped


def test_dynamic_input_needs_a_shape():
    model = to_onnx(mobilenet_v2_like(), 64, dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(LatkitError, match=r"m.onnx: input .input. is \?x3x\?x\?: .*--input-shape"):
        map_onnx(model, label="m.onnx")
    ops = map_onnx(model, (1, 3, 128, 128)).ops
    assert ops[0] == OpSpec("conv", 128, 3, 16, stride=2, kernel=3)


def test_a_dynamic_batch_alone_takes_the_devices():
    model = to_onnx(mobilenet_v2_like(), 64, dynamic_axes={"input": {0: "n"}})
    assert list(map_onnx(model, batch=2).ops) == [op.replace(batch=2) for op in MOBILENET_V2_OPS]
    with pytest.raises(LatkitError, match=r"input .input. is \?x3x64x64: .*--input-shape"):
        map_onnx(model)


def test_an_input_shape_may_not_contradict_the_file():
    model = to_onnx(mobilenet_v2_like(), 64)
    with pytest.raises(
        LatkitError, match="^m.onnx: input 'input' fixes C at 3; the input shape gives 4$"
    ):
        map_onnx(model, (1, 4, 64, 64), label="m.onnx")
    with pytest.raises(LatkitError, match="fixes H at 64; the input shape gives 32"):
        map_onnx(model, (1, 3, 32, 32), label="m.onnx")


def test_a_conv_whose_weight_takes_other_channels_than_its_input_is_refused():
    """ONNX's shape inference lets a dynamic C of 4 into a stem whose weight takes 3."""
    model = to_onnx(mobilenet_v2_like(), 64, dynamic_axes={"input": {1: "c"}})
    mapped = map_onnx(model, (1, 4, 64, 64))
    stem = next(n.name for n in model.graph.node if n.op_type == "Conv")
    assert "its weight takes 3 input channels; its input has 4" in _listed(mapped, stem)[stem]
    assert list(mapped.ops) == MOBILENET_V2_OPS[1:]


def test_an_input_that_is_not_an_image_is_named_as_such():
    flat = onnx.load_from_string(trace_onnx(nn.Linear(16, 10).eval(), torch.zeros(1, 16)))
    with pytest.raises(LatkitError, match=r"^dense: input .* is 1x16: latkit maps 4-D NCHW image"):
        map_onnx(flat, label="dense")


BAD_SHAPES = {
    "a string": ("1,3,64,64", "give N,C,H,W as four positive integers"),
    "three dims": ((1, 3, 64), "give N,C,H,W"),
    "a zero": ((1, 3, 0, 64), "give N,C,H,W"),
    "a negative": ((1, 3, 64, -64), "give N,C,H,W"),
    "a float": ((1, 3, 64.0, 64), "give N,C,H,W"),
    "a string dim": ((1, "3", 64, 64), "give N,C,H,W"),
    "huge H": ((1, 3, 5000, 64), "H and W are at most 4096"),
    "huge N": ((5000, 3, 64, 64), "N is at most 4096"),
}


@pytest.mark.parametrize("case", BAD_SHAPES)
def test_bad_input_shapes_from_python_are_one_error(case):
    shape, said = BAD_SHAPES[case]
    for source in (mobilenet_v2_like(), to_onnx(mobilenet_v2_like(), 64)):
        with pytest.raises(LatkitError, match=f"^input_shape {re.escape(repr(shape))}: {said}"):
            read_model(source, shape)


# --- the command line ----------------------------------------------------------------------------


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, LatkitError | SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict[str, Path]:
    """A few ops of proxyless-tiny profiled on this CPU (short timing) and fitted; an ONNX file
    of a MobileNetV2-like network that F has not seen."""
    root = tmp_path_factory.mktemp("onnx")
    device, db, data = write_device(root / "tiny.yaml"), root / "s.sqlite", root / "data"
    args = ["--device", device, "--db", db]
    assert invoke("profile", *args, "--space", "proxyless-tiny", "--limit", 8).exit_code == 0
    assert invoke("fit", *args, "--data-dir", data).exit_code == 0
    net = root / "mbv2.onnx"
    net.write_bytes(to_onnx(mobilenet_v2_like(), 64).SerializeToString())
    return {"root": root, "device": device, "db": db, "data": data, "net": net}


def predict_json(fitted, *extra) -> dict:
    """`latkit predict` of the fitted device: its one JSON entry, and what it printed."""
    out = fitted["root"] / "predict.json"
    args = ["predict", "--device", fitted["device"], "--db", fitted["db"]]
    result = invoke(*args, "--data-dir", fitted["data"], "--json", out, *extra)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(out.read_text())["networks"]
    return {**entry, "printed": result.output}


def test_predict_profile_predict_again_from_the_table(fitted):
    before = predict_json(fitted, "--onnx", fitted["net"], "--ops")
    assert before["nodes"] == {"nodes_total": 27, "nodes_mapped": 27, "unmapped": []}
    assert [op["key"] for op in before["ops"][: len(MOBILENET_V2_OPS)]] == [
        op.key for op in MOBILENET_V2_OPS
    ]
    assert "model, outside the fitted range" in {op["source"] for op in before["ops"]}
    args = ["--device", fitted["device"], "--db", fitted["db"]]
    result = invoke("profile", *args, "--onnx", fitted["net"])
    assert result.exit_code == 0, result.output
    assert invoke("fit", *args, "--data-dir", fitted["data"]).exit_code == 0
    after = predict_json(fitted, "--onnx", fitted["net"], "--ops")
    assert {op["source"] for op in after["ops"]} <= {"table", "networks"}
    again = invoke("profile", *args, "--onnx", fitted["net"])  # resumes: nothing new
    assert "resuming: 7 of 7 ops already stored" in again.output


def test_time_network_stores_the_rebuild_and_predict_shows_it(fitted):
    args = ["--device", fitted["device"], "--db", fitted["db"]]
    result = invoke("time-network", *args, "--onnx", fitted["net"], "--no-ops")
    assert result.exit_code == 0, result.output
    with MeasurementStore(fitted["db"]) as store:
        rows = store.networks("test-cpu")
    timed = rows[rows["origin"] == "time-network"]
    assert len(timed) == 1 and timed["name"].iloc[0] == "mbv2"
    entry = predict_json(fitted, "--onnx", fitted["net"])
    assert entry["measured_ms"] == pytest.approx(float(timed["median_ms"].iloc[0]))


def test_time_network_says_how_to_remeasure_an_onnx_files_unstable_ops(fitted, tmp_path):
    """The advice names the --onnx file the ops came from, not a space they are in no part of."""
    db = tmp_path / "copy.sqlite"
    with sqlite3.connect(fitted["db"]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    args = ["time-network", "--device", fitted["device"], "--db", db, "--onnx", fitted["net"]]
    assert invoke(*args).exit_code == 0
    with sqlite3.connect(db) as store:
        store.execute("UPDATE measurements SET unstable = 1")
    printed = " ".join(invoke(*args).output.split())
    remeasure = f"latkit profile --device {fitted['device']} --onnx {fitted['net']} --db {db}"
    assert f"{remeasure} --only-unstable re-measures those of the --onnx files" in printed
    assert "SPACE" not in printed


def test_unmapped_nodes_stop_predict_unless_allowed(fitted, capsys, monkeypatch):
    dilated = fitted["root"] / "dilated.onnx"
    net = nn.Sequential(
        conv_bn(3, 16, 3, 2), conv_bn(16, 32, 3, dilation=2), *head(32, 64, nn.ReLU6)
    )
    dilated.write_bytes(to_onnx(net, 32).SerializeToString())
    line = fail(
        ["predict", "-d", fitted["device"], "--onnx", dilated, "--data-dir", fitted["data"]],
        monkeypatch,
        capsys,
    )
    assert "dilated.onnx: 2 of" in line and "/1/1.0/Conv (Conv): dilation 2x2" in line
    entry = predict_json(fitted, "--onnx", dilated, "--allow-unmapped")
    assert entry["nodes"]["unmapped"][0].startswith("/1/1.0/Conv (Conv): dilation 2x2")
    assert "warning: dilated: 2 of 9 nodes left out" in entry["printed"]


BAD_FILES = {
    "text": (lambda: b"not an onnx model\n", "not an ONNX model"),
    "empty ModelProto": (lambda: onnx.ModelProto().SerializeToString(), "no graph"),
    "dynamic dims": (
        lambda: to_onnx(
            mobilenet_v2_like(), 64, dynamic_axes={"input": {2: "h", 3: "w"}}
        ).SerializeToString(),
        "input 'input' is 1x3x?x?",
    ),
    "batch 2": (
        lambda: export_module(mobilenet_v2_like(), (2, 3, 64, 64)).SerializeToString(),
        "has batch 2, device test-cpu times batch 1: the file fixes N, so export it at batch 1",
    ),
}


def test_a_batch_from_the_input_shape_is_told_to_change_it(tmp_path, monkeypatch, capsys):
    """Where N came from --input-shape, not from the file, the shape is what to change."""
    path = tmp_path / "model.onnx"
    net = to_onnx(mobilenet_v2_like(), 64, dynamic_axes={"input": {0: "n"}})
    path.write_bytes(net.SerializeToString())
    device, db = write_device(tmp_path / "d.yaml"), tmp_path / "s.sqlite"
    args = ["predict", "-d", device, "--onnx", path, "--input-shape", "2,3,64,64", "--db", db]
    line = fail(args, monkeypatch, capsys)
    assert "has batch 2, device test-cpu times batch 1: give --input-shape 1,3,64,64" in line
    args[args.index("2,3,64,64")] = "1,3,64,64"  # and the advice, followed, is taken
    line = fail([*args, "--data-dir", tmp_path / "none"], monkeypatch, capsys)
    assert line.startswith("error: no predictor")


@pytest.mark.parametrize("case", BAD_FILES)
@pytest.mark.parametrize("command", ["predict", "profile", "time-network"])
def test_bad_files_are_one_line_and_store_nothing(case, command, tmp_path, monkeypatch, capsys):
    make, said = BAD_FILES[case]
    path = tmp_path / "model.onnx"
    path.write_bytes(make())
    device, db = write_device(tmp_path / "d.yaml"), tmp_path / "s.sqlite"
    line = fail([command, "-d", device, "--onnx", path, "--db", db], monkeypatch, capsys)
    assert line.startswith(f"error: {path}") and said in line
    assert not db.exists()


@pytest.mark.parametrize(
    "shape", ["1,3,²,64", "1,3,64", "0,3,64,64", "-1,3,64,64", "1,3,6.5,64", "1,3,64,99999"]
)
@pytest.mark.parametrize("command", ["predict", "profile", "time-network"])
def test_bad_input_shapes_are_one_line(shape, command, tmp_path, monkeypatch, capsys):
    device, db = write_device(tmp_path / "d.yaml"), tmp_path / "s.sqlite"
    argv = [command, "-d", device, "--onnx", "m.onnx", "--input-shape", shape, "--db", db]
    assert fail(argv, monkeypatch, capsys).startswith(f"error: --input-shape {shape!r}: ")
    assert not db.exists()


@pytest.mark.parametrize("option", [["--input-shape", "1,3,64,64"], ["--allow-unmapped"]])
@pytest.mark.parametrize("command", ["predict", "profile", "time-network"])
def test_onnx_options_without_onnx_are_refused(option, command, tmp_path, monkeypatch, capsys):
    device = write_device(tmp_path / "d.yaml")
    arch = (
        []
        if command == "profile"
        else ["--arch", DATA / "archs/proxylessnas/proxyless_mobile.config"]
    )
    line = fail([command, "-d", device, *arch, *option], monkeypatch, capsys)
    assert line == f"error: {option[0]} applies to --onnx networks: give --onnx MODEL.onnx"


def test_a_dynamic_batch_is_predicted_at_the_devices(fitted):
    dynamic = fitted["root"] / "dynamic.onnx"
    model = to_onnx(mobilenet_v2_like(), 64, dynamic_axes={"input": {0: "n"}})
    dynamic.write_bytes(model.SerializeToString())
    fixed = predict_json(fitted, "--onnx", fitted["net"])["predicted_ms"]
    assert predict_json(fitted, "--onnx", dynamic)["predicted_ms"] == fixed


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--space", "proxyless-tiny"], "it takes no --space"),
        (["--fresh"], "it takes no --fresh or --no-resume"),
        (["--limit", "3"], "it takes no --limit"),
    ],
)
def test_profile_onnx_refuses_options_of_a_space(extra, said, tmp_path, monkeypatch, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(to_onnx(mobilenet_v2_like(), 64).SerializeToString())
    device, db = write_device(tmp_path / "d.yaml"), tmp_path / "s.sqlite"
    argv = ["profile", "-d", device, "--onnx", path, "--db", db, *extra]
    assert said in fail(argv, monkeypatch, capsys)
    assert not db.exists()


# --- Python --------------------------------------------------------------------------------------


def test_python_api_answers_for_modules_files_and_op_lists(fitted):
    import latkit

    f = latkit.load_predictor(fitted["device"], db=fitted["db"], data_dir=fitted["data"])
    r = f.predict(mobilenet_v2_like(), input_shape=(1, 3, 64, 64))
    assert r.latency_ms == r.predicted_ms > 0 and r.low_ms <= r.latency_ms <= r.high_ms
    assert [s.key for s in r.ops][: len(MOBILENET_V2_OPS)] == [op.key for op in MOBILENET_V2_OPS]
    assert r.unmapped == () and {s.source for s in r.ops} <= {"table", "networks", "model"} | {
        "model, outside the fitted range"
    }
    assert f.predict(str(fitted["net"])).latency_ms == r.latency_ms
    assert f.predict(onnx.load(fitted["net"])).latency_ms == r.latency_ms
    assert f.predict(MOBILENET_V2_OPS).latency_ms == r.latency_ms
    odd = nn.Sequential(conv_bn(3, 16, 3, 2), conv_bn(16, 32, 3, dilation=2), *head(32, 8, nn.ReLU))
    with pytest.raises(LatkitError, match="dilation 2x2"):
        f.predict(odd, input_shape=(1, 3, 32, 32))
    partial = f.predict(odd, input_shape=(1, 3, 32, 32), allow_unmapped=True)
    assert len(partial.unmapped) == 2 and partial.latency_ms > 0


def test_python_api_refuses_another_batch_bad_shapes_and_no_ops(fitted):
    import latkit

    f = latkit.load_predictor(fitted["device"], db=fitted["db"], data_dir=fitted["data"])
    with pytest.raises(LatkitError, match="^Sequential has batch 2, device test-cpu times batch 1"):
        f.predict(mobilenet_v2_like(), input_shape=(2, 3, 64, 64))
    with pytest.raises(LatkitError, match="^input_shape '1,3,64,64': give N,C,H,W"):
        f.predict(mobilenet_v2_like(), input_shape="1,3,64,64")
    with pytest.raises(LatkitError, match="^an empty op list"):
        f.predict([])


def test_import_latkit_stays_light():
    probe = "import sys, latkit; assert 'torch' not in sys.modules and 'onnx' not in sys.modules"
    probe += "; assert callable(latkit.load_predictor)"
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_predicting_an_arch_does_not_import_onnx():
    probe = (
        "import sys, latkit.cli.predict, latkit.workflows.predict; assert 'onnx' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
