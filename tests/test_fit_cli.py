"""The predictor commands end to end: real SQLite, real onnxruntime timings, real LUTs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from latkit.cli import app
from latkit.errors import LatkitError
from latkit.predictors import LatencyPredictor, predictor_path
from latkit.store import MeasurementStore

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TRIM = DATA / "luts" / "proxylessnas" / "mobile_trim.yaml"
runner = CliRunner()

DEVICE_YAML = """\
name: tiny-cpu
kind: cpu
runtime: onnxruntime
batch_size: 1
threads: 1
timing: {warmup: 2, runs: 10, rounds: 2, max_cv: 0.5}
"""


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, (LatkitError, SystemExit)):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> dict[str, Path]:
    """proxyless-tiny profiled on this CPU with onnxruntime (short timing), then fitted."""
    root = tmp_path_factory.mktemp("cpu")
    device = root / "tiny-cpu.yaml"
    device.write_text(DEVICE_YAML)
    db, data = root / "store.sqlite", root / "data"
    result = invoke("profile", "--device", device, "--space", "proxyless-tiny", "--db", db)
    assert result.exit_code == 0, result.output
    out = root / "fit.json"
    result = invoke("fit", "--device", device, "--db", db, "--data-dir", data, "--json", out)
    assert result.exit_code == 0, result.output
    return {"root": root, "device": device, "db": db, "data": data, "fit_json": out}


def test_fit_saves_the_predictor_and_writes_the_json(profiled):
    payload = json.loads(profiled["fit_json"].read_text())
    assert set(payload) == {"device", "n_train", "n_test", "test"}
    assert payload["device"] == "tiny-cpu"
    assert payload["n_train"] + payload["n_test"] == 40 and payload["n_test"] == 8
    assert set(payload["test"]) == {"acc5", "acc10", "rmspe", "spearman"}
    assert 0 <= payload["test"]["acc10"] <= 1 and payload["test"]["rmspe"] < 50
    predictor = LatencyPredictor.load(predictor_path("tiny-cpu", profiled["data"]))
    assert predictor.meta["runtime"] == "onnxruntime" and predictor.meta["batch"] == 1
    # the network terms come from the calibration networks that `profile` timed
    assert predictor.meta["n_ops"] == 40 and predictor.meta["overhead_networks"] == 10


def test_validate_times_networks_and_writes_csv_png_json(profiled):
    out = profiled["root"] / "validate.json"
    args = ["validate", "--device", profiled["device"], "--space", "proxyless-tiny"]
    args += ["--networks", 3, "--db", profiled["db"], "--data-dir", profiled["data"], "--json", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["n"] == 3 and set(payload) == {"n", "acc5", "acc10", "rmspe", "spearman"}
    assert 0 <= payload["acc5"] <= payload["acc10"] <= 1 and payload["rmspe"] < 100
    folder = profiled["data"] / "tiny-cpu"
    rows = (folder / "validation.csv").read_text().splitlines()
    assert rows[0] == "name,arch,predicted_ms,measured_ms,error_pct" and len(rows) == 4
    assert (folder / "validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def origins() -> list[str]:
        with MeasurementStore(profiled["db"]) as store:
            return sorted(store.networks("tiny-cpu")["origin"])

    assert origins() == ["calibrate"] * 10 + ["validate"] * 3
    before = LatencyPredictor.load(predictor_path("tiny-cpu", profiled["data"]))
    # a refit never learns from the networks validate judged it on
    assert (
        invoke(
            "fit", "--device", "tiny-cpu", "--db", profiled["db"], "--data-dir", profiled["data"]
        ).exit_code
        == 0
    )
    refit = LatencyPredictor.load(predictor_path("tiny-cpu", profiled["data"]))
    assert refit.meta["overhead_networks"] == 10
    assert (refit.overhead_ms, refit.per_op_ms) == (before.overhead_ms, before.per_op_ms)
    # and a second validate resumes from the stored timings instead of re-timing them
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert origins() == ["calibrate"] * 10 + ["validate"] * 3


def test_fit_from_networks_jsonl(profiled, tmp_path):
    with MeasurementStore(profiled["db"]) as store:
        frame = store.dataframe("tiny-cpu")
    from latkit.predictors.fit import ops_of
    from latkit.spaces import load_space

    table = dict(zip(ops_of(frame), frame["median_ms"]))
    lines = []
    for _, network in load_space("proxyless-tiny").sample_networks(30, seed=5):
        latency = sum(table.get(op, 0.0) for op in network.ops) + 0.05
        lines.append(json.dumps({"ops": [op.key for op in network.ops], "latency_ms": latency}))
    nets = tmp_path / "nets.jsonl"
    nets.write_text("\n".join(lines) + "\n")
    out, data = tmp_path / "fit.json", tmp_path / "data"
    args = ["fit", "--device", "tiny-cpu", "--db", profiled["db"], "--networks", nets]
    result = invoke(*args, "--data-dir", data, "--json", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert (payload["n_train"], payload["n_test"]) == (24, 6)
    assert payload["test"]["acc10"] >= 0.8
    predictor = LatencyPredictor.load(predictor_path("tiny-cpu", data))
    assert predictor.meta["source"] == "networks" and predictor.meta["runtime"] == "onnxruntime"
    calibrated = invoke(*args, "--calibrate", "--data-dir", tmp_path / "cal")
    assert calibrated.exit_code == 0, calibrated.output
    assert (
        LatencyPredictor.load(predictor_path("tiny-cpu", tmp_path / "cal")).meta["family"]
        == "calibrated"
    )


def test_lut_import_fit_export_by_name(tmp_path):
    db = tmp_path / "s.sqlite"
    result = invoke("import-lut", TRIM, "--device", "phone", "--db", db)
    assert result.exit_code == 0 and "72 ops (proxylessnas dialect)" in result.output
    data = tmp_path / "data"
    assert invoke("fit", "--device", "phone", "--db", db, "--data-dir", data).exit_code == 0
    assert LatencyPredictor.load(predictor_path("phone", data)).meta["runtime"] == "imported"
    out = tmp_path / "out.yaml"
    result = invoke(
        "export-lut", "--device", "phone", "--format", "proxylessnas", "--out", out, "--db", db
    )
    assert result.exit_code == 0
    original, exported = yaml.safe_load(TRIM.read_text()), yaml.safe_load(out.read_text())
    assert {k: v["mean"] for k, v in exported.items()} == {
        k: v["mean"] for k, v in original.items()
    }


def test_user_errors_are_latkit_errors(tmp_path, profiled):
    db = tmp_path / "s.sqlite"
    result = invoke("fit", "--device", "nowhere", "--db", db)
    assert isinstance(result.exception, LatkitError)
    result = invoke(
        "export-lut", "--device", "phone", "--format", "tflite", "--out", tmp_path / "x", "--db", db
    )
    assert isinstance(result.exception, LatkitError)
    invoke("import-lut", TRIM, "--device", "phone", "--db", db)
    result = invoke("validate", "--device", "phone", "--db", db)
    assert isinstance(result.exception, LatkitError) and "needs a device file" in str(
        result.exception
    )
    result = invoke("validate", "--device", profiled["device"], "--db", db, "--data-dir", tmp_path)
    assert "latkit fit --device tiny-cpu" in str(result.exception)
    result = invoke("import-lut", TRIM, "--device", "bad name!", "--db", db)
    assert "device name" in str(result.exception)


def test_bad_csv_row_exits_2_with_its_line_number(tmp_path):
    """Through the real entry point: one line on stderr, no traceback, exit status 2."""
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(
        "type,input_hw,cin,cout,stride,kernel,expand,latency_ms\n"
        "mbconv,56,24,24,1,3,3,0.43\n"
        "mbconv,56,24,24,1,3,6,0.75\n"
        "mbconv,56,24,24,1,3,lots,0.75\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from latkit.cli import main; main()",
            "import-measurements",
            str(csv_path),
            "--device",
            "elsewhere",
            "--db",
            str(tmp_path / "s.sqlite"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "m.csv:4:" in proc.stderr and "Traceback" not in proc.stderr


def test_fit_device_on_real_timings_hits_the_table_exactly(profiled, tmp_path):
    from latkit.predictors import fit_device
    from latkit.predictors.fit import ops_of

    with MeasurementStore(profiled["db"]) as store:
        frame = store.dataframe("tiny-cpu")
        report = fit_device(store, "tiny-cpu", test_fraction=0.25, seed=3, data_dir=tmp_path)
    assert (report.n_train, report.n_test) == (30, 10)
    assert report.path == predictor_path("tiny-cpu", tmp_path) and report.path.exists()
    assert set(report.comparison) == {"additive", "loglinear", "gbdt", "hybrid"}
    chosen = report.predictor.meta["family"]
    assert report.test == {k: report.comparison[chosen][k] for k in report.test}
    assert report.predictor.predict(ops_of(frame)).tolist() == frame["median_ms"].tolist()
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.n_train = 0


def test_validate_device_api_reports_rows_and_progress(profiled, tmp_path):
    from latkit.devices import load_device
    from latkit.predictors import load_predictor
    from latkit.profilers import get_profiler
    from latkit.reporting import SilentReporter
    from latkit.spaces import load_space
    from latkit.workflows.validate import validate_device

    class Counting(SilentReporter):
        def task(self, description, total):
            return steps.append

    profiler = get_profiler(load_device(profiled["device"]))
    predictor = load_predictor("tiny-cpu", profiled["data"])
    steps: list[float] = []
    space = load_space("proxyless-tiny")
    report = validate_device(
        profiler, predictor, space, n=2, seed=11, out_dir=tmp_path, reporter=Counting()
    )
    assert report.n == 2 and steps == [1, 1]
    assert [r["name"] for r in report.rows] == [n.name for _, n in space.sample_networks(2, 11)]
    for r in report.rows:
        assert set(r) == {"name", "arch", "predicted_ms", "measured_ms"}
        assert r["measured_ms"] > 0 and r["predicted_ms"] > 0
    assert report.csv_path.parent == tmp_path and report.png_path.exists()
    assert set(report.metrics) == {"acc5", "acc10", "rmspe", "spearman"}
