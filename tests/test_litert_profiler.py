"""LiteRT on the host CPU: real interpreter with XNNPACK, real timing loop, real SQLite store."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import torch
from typer.testing import CliRunner

from latkit.cli import app
from latkit.devices import load_device
from latkit.modules import build_network, example_input
from latkit.profilers import get_profiler
from latkit.profilers.litert import (
    LiteRTBuiltinProfiler,
    LiteRTProfiler,
    delegated,
    make_interpreter,
)
from latkit.profilers.session import profile_ops
from latkit.profilers.tflite_writer import export_tflite
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from tests.conftest import ROOT, write_device


def test_shipped_device_file_selects_litert() -> None:
    device = load_device(ROOT / "device_configs/local-cpu-litert.yaml")
    assert (device.name, device.kind, device.runtime, device.threads) == (
        "local-cpu-litert",
        "cpu",
        "litert",
        1,
    )
    assert device.timing == load_device(ROOT / "device_configs/local-cpu.yaml").timing


def test_profile_ops_into_store_and_resume(tmp_path) -> None:
    device = load_device(write_device(tmp_path / "dev.yaml", name="host-litert", runtime="litert"))
    profiler = get_profiler(device)
    assert isinstance(profiler, LiteRTProfiler)
    env = profiler.environment()
    assert env.runtime == "litert" and env.threads == 1 and env.batch == 1
    assert env.runtime_version == importlib.metadata.version("ai-edge-litert")
    assert env.extra == {"delegate": "xnnpack"}

    ops = load_space("proxyless-tiny").distinct_ops()[:4]
    with MeasurementStore(tmp_path / "store.sqlite") as store:
        summary = profile_ops(profiler, ops, store)
        assert summary.measured == 4 and summary.skipped == 0
        frame = store.dataframe("host-litert")
        assert sorted(frame["key"]) == sorted(op.key for op in ops)
        assert (frame["runtime"] == "litert").all() and (frame["median_ms"] > 0).all()
        assert (frame["runs"] == 10).all()  # 5 runs x 2 rounds, as the device file says
        assert {json.loads(e)["delegate"] for e in frame["env_json"]} == {"xnnpack"}
        again = profile_ops(profiler, ops, store)
        assert again.measured == 0 and again.skipped == 4


def test_runner_runs_the_same_model_as_torch(tmp_path) -> None:
    """`load` times the real model: after invoking, its output is the torch output."""
    device = load_device(write_device(tmp_path / "dev.yaml", runtime="litert"))
    ops = load_space("proxyless-tiny").distinct_ops()[2:4]
    run = LiteRTProfiler(device).load(ops[:1])
    interpreter = run.__self__
    run()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    with torch.no_grad():
        ref = build_network(ops[:1])(example_input(ops[0])).numpy().transpose(0, 2, 3, 1)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert delegated(interpreter), "XNNPACK must run the op, not the reference kernels"


def test_builtin_kernels_are_a_device_of_their_own(tmp_path) -> None:
    """`runtime: litert-builtin` runs the same file without XNNPACK, to the same output, under
    an environment of its own (so its rows never mix with XNNPACK's)."""
    device = load_device(ROOT / "device_configs/local-cpu-litert-builtin.yaml")
    profiler = get_profiler(device)
    assert isinstance(profiler, LiteRTBuiltinProfiler)
    env = profiler.environment()
    assert env.extra == {"delegate": "none"}
    xnnpack = get_profiler(load_device(ROOT / "device_configs/local-cpu-litert.yaml"))
    assert env.env_id != xnnpack.environment().env_id
    ops = load_space("proxyless-tiny").distinct_ops()[2:3]
    run = profiler.load(ops)
    interpreter = run.__self__
    run()
    assert not delegated(interpreter)
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    with torch.no_grad():
        ref = build_network(ops)(example_input(ops[0])).numpy().transpose(0, 2, 3, 1)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_xnnpack_is_what_runs() -> None:
    model = export_tflite([load_space("proxyless-tiny").distinct_ops()[3]])
    assert delegated(make_interpreter(model))
    from ai_edge_litert.interpreter import OpResolverType

    plain = make_interpreter(model, resolver=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    assert not delegated(plain)


def test_latkit_profile_command_with_litert(tmp_path) -> None:
    device = write_device(tmp_path / "dev.yaml", name="cli-litert", runtime="litert")
    db, summary = tmp_path / "s.sqlite", tmp_path / "summary.json"
    args = ["profile", "--device", str(device), "--space", "proxyless-tiny", "--db", str(db)]
    result = CliRunner().invoke(app, [*args, "--limit", "2", "--json", str(summary)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert json.loads(summary.read_text())["ops"] == 2
    with MeasurementStore(db) as store:
        assert len(store.dataframe("cli-litert")) == 2
