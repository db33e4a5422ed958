"""`latkit export`: files per op and whole networks, checked in the real runtimes against torch."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import torch
from typer.testing import CliRunner

from latkit.cli import app
from latkit.errors import LatkitError
from latkit.modules import build_network, example_input
from latkit.ops import OpSpec
from latkit.profilers.litert import run_tflite
from latkit.spaces import Network, load_space


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _torch(ops: list[OpSpec]) -> tuple[np.ndarray, np.ndarray]:
    x = example_input(ops[0])
    with torch.no_grad():
        return x.numpy(), build_network(ops)(x).numpy()


def _close(out: np.ndarray, ref: np.ndarray) -> bool:
    return out.shape == ref.shape and np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_every_op_of_a_space_as_tflite(tmp_path) -> None:
    out = tmp_path / "tflite"
    _invoke("export", "--space", "proxyless-tiny", "--out", str(out), "--format", "tflite")
    ops = load_space("proxyless-tiny").distinct_ops()
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert len(manifest) == len(ops) == len(list(out.glob("*.tflite")))
    assert sorted(e["key"] for e in manifest.values()) == sorted(op.key for op in ops)
    for name, entry in manifest.items():
        assert ":" not in name and name.endswith(".tflite") and entry["format"] == "tflite"
        assert (out / name).is_file() and OpSpec.from_dict(entry["op"]).key == entry["key"]
    # a file picked by its manifest entry is that op, numerically
    name, entry = next((n, e) for n, e in manifest.items() if "-expand:6-kernel:5" in e["key"])
    op = OpSpec.from_dict(entry["op"])
    x, ref = _torch([op])
    assert _close(run_tflite((out / name).read_bytes(), x), ref)


def test_whole_network_as_onnx_and_tflite_into_one_manifest(tmp_path) -> None:
    (arch, network), *_ = load_space("proxyless-tiny").sample_networks(1, seed=3)
    config = tmp_path / "tiny-net.config"
    config.write_text(json.dumps(network.to_config()))
    out = tmp_path / "net"
    _invoke("export", "--arch", str(config), "--out", str(out), "--format", "onnx")
    _invoke("export", "--arch", str(config), "--out", str(out), "--format", "tflite")
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert set(manifest) == {"tiny-net.onnx", "tiny-net.tflite"}
    ops = list(Network.load(config).ops)
    assert manifest["tiny-net.onnx"]["keys"] == [op.key for op in ops]
    assert manifest["tiny-net.tflite"]["format"] == "tflite"

    x, ref = _torch(ops)
    session = ort.InferenceSession(str(out / "tiny-net.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"input": x})
    assert _close(onnx_out, ref)
    assert _close(run_tflite((out / "tiny-net.tflite").read_bytes(), x), ref)


MICRO_SPACE = """
name: micro
input_hw: 16
stem: {channels: 8, stride: 2}
first_block: {channels: 8}
stages: [{width: 16, blocks: 2, stride: 2}]
candidates: {kernels: [5], expands: [3], zero: true}
head: {feature_mix: 32, classes: 10}
"""


def test_onnx_per_op_export_of_a_space_file(tmp_path) -> None:
    space_file = tmp_path / "micro.yaml"
    space_file.write_text(MICRO_SPACE)
    out = tmp_path / "onnx"
    _invoke("export", "--space", str(space_file), "--out", str(out), "--format", "onnx")
    ops = load_space(space_file).distinct_ops()
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert len(manifest) == len(ops) == len(list(out.glob("*.onnx")))
    assert {e["format"] for e in manifest.values()} == {"onnx"}
    for name, entry in manifest.items():
        x, ref = _torch([OpSpec.from_dict(entry["op"])])
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        assert _close(session.run(None, {"input": x})[0], ref), entry["key"]


def test_bad_format_and_bad_manifest_are_user_errors(tmp_path) -> None:
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path), "--format", "caffe"])
    assert isinstance(result.exception, LatkitError) and "tflite, onnx" in str(result.exception)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    result = CliRunner().invoke(
        app, ["export", "--space", "proxyless-tiny", "--out", str(tmp_path)]
    )
    assert isinstance(result.exception, LatkitError) and "manifest" in str(result.exception)


def test_missing_arch_file_is_a_user_error(tmp_path) -> None:
    missing = tmp_path / "nope.config"
    result = CliRunner().invoke(app, ["export", "--arch", str(missing), "--out", str(tmp_path)])
    assert isinstance(result.exception, LatkitError) and "nope.config" in str(result.exception)


def test_a_failed_export_leaves_no_folder_behind(tmp_path) -> None:
    out = tmp_path / "new" / "out"
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(app, ["export", "--out", str(out), "--space", str(missing)])
    assert isinstance(result.exception, LatkitError) and "nope.yaml" in str(result.exception)
    result = CliRunner().invoke(app, ["export", "--out", str(out), "--batch", "100000"])
    assert result.exit_code == 2 and "--batch" in result.output
    assert list(tmp_path.iterdir()) == []  # --out is created by the first file, not before
