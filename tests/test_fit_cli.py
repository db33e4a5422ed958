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
from latkit.profilers.session import CALIBRATION_NETWORKS
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


METRICS = {"acc5", "acc10", "rmspe", "spearman", "kendall"}


def test_fit_saves_the_predictor_and_writes_the_json(profiled):
    payload = json.loads(profiled["fit_json"].read_text())
    assert set(payload) == {
        "device", "source", "family", "prior", "n_train", "n_test", "interval_level", "test",
        "networks",
    }  # fmt: skip
    assert payload["device"] == "tiny-cpu" and payload["source"] == "ops"
    assert payload["n_train"] + payload["n_test"] == 40 and payload["n_test"] == 8
    assert set(payload["test"]) == METRICS | {"coverage"} and payload["interval_level"] == 0.9
    assert 0 <= payload["test"]["acc10"] <= 1 and payload["test"]["rmspe"] < 50
    predictor = LatencyPredictor.load(predictor_path("tiny-cpu", profiled["data"]))
    assert predictor.meta["runtime"] == "onnxruntime" and predictor.meta["batch"] == 1
    # the network terms come from the calibration networks that `profile` timed
    assert (
        predictor.meta["n_ops"] == 40
        and predictor.meta["overhead_networks"] == CALIBRATION_NETWORKS
    )


def test_validate_times_networks_and_writes_csv_png_json(profiled):
    out = profiled["root"] / "validate.json"
    args = ["validate", "--device", profiled["device"], "--space", "proxyless-tiny"]
    args += ["--networks", 3, "--db", profiled["db"], "--data-dir", profiled["data"], "--json", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["n"] == 3 and set(payload) == {"n", "coverage"} | METRICS
    assert 0 <= payload["coverage"] <= 1
    assert 0 <= payload["acc5"] <= payload["acc10"] <= 1 and payload["rmspe"] < 100
    folder = profiled["data"] / "tiny-cpu"
    rows = (folder / "validation.csv").read_text().splitlines()
    header = "name,arch,predicted_ms,low_ms,high_ms,measured_ms,error_pct"
    assert rows[0] == header and len(rows) == 4
    assert (folder / "validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def origins() -> list[str]:
        with MeasurementStore(profiled["db"]) as store:
            return sorted(store.networks("tiny-cpu")["origin"])

    assert origins() == ["calibrate"] * CALIBRATION_NETWORKS + ["validate"] * 3
    before = LatencyPredictor.load(predictor_path("tiny-cpu", profiled["data"]))
    # a refit never learns from the networks validate judged it on
    assert (
        invoke(
            "fit", "--device", "tiny-cpu", "--db", profiled["db"], "--data-dir", profiled["data"]
        ).exit_code
        == 0
    )
    refit = LatencyPredictor.load(predictor_path("tiny-cpu", profiled["data"]))
    assert refit.meta["overhead_networks"] == CALIBRATION_NETWORKS
    assert (refit.overhead_ms, refit.per_op_ms) == (before.overhead_ms, before.per_op_ms)
    # and a second validate resumes from the stored timings instead of re-timing them
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert origins() == ["calibrate"] * CALIBRATION_NETWORKS + ["validate"] * 3


def networks_jsonl(profiled, path: Path, n: int, scale: float = 1.0, extra: float = 0.05) -> Path:
    """`n` proxyless-tiny networks whose latency is `scale` x the sum of their ops' real timings
    on this CPU, plus `extra` ms."""
    with MeasurementStore(profiled["db"]) as store:
        frame = store.dataframe("tiny-cpu")
    from latkit.predictors.fit import ops_of
    from latkit.spaces import load_space

    table = dict(zip(ops_of(frame), frame["median_ms"]))
    lines = []
    for _, network in load_space("proxyless-tiny").sample_networks(n, seed=5):
        latency = scale * sum(table.get(op, 0.0) for op in network.ops) + extra
        lines.append(json.dumps({"ops": [op.key for op in network.ops], "latency_ms": latency}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_from_networks_jsonl(profiled, tmp_path):
    nets = networks_jsonl(profiled, tmp_path / "nets.jsonl", 30)
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
    assert set(report.comparison) == {"additive", "loglinear", "gbdt", "hybrid", "auto"}
    # the held-out figures are auto's (the kept family inside the profiled range, the
    # extrapolation family outside it), beside every family alone on the same split
    assert report.test == report.comparison["auto"] and 0 <= report.test["coverage"] <= 1
    assert report.predictor.meta["family"] in report.comparison
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
        assert set(r) == {"name", "arch", "predicted_ms", "low_ms", "high_ms", "measured_ms"}
        assert r["low_ms"] <= r["predicted_ms"] <= r["high_ms"] and r["measured_ms"] > 0
    assert report.csv_path.parent == tmp_path and report.png_path.exists()
    assert set(report.metrics) == METRICS | {"coverage"}


def test_few_shot_fit_creates_a_new_device_and_uses_a_prior(profiled, tmp_path):
    """`fit --device NEW --networks few.jsonl --train 10 --prior REF`, as a new board's user
    would run it: fitted on 10 networks, scored on the other 30."""
    nets = networks_jsonl(profiled, tmp_path / "few.jsonl", 40, scale=1.6, extra=0.2)
    out = tmp_path / "few.json"
    args = ["fit", "--device", "new-board", "--db", profiled["db"], "--networks", nets]
    args += ["--train", 10, "--prior", "tiny-cpu", "--data-dir", profiled["data"], "--json", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "new device 'new-board'" in result.output and "no device file" in result.output
    payload = json.loads(out.read_text())
    assert (payload["n_train"], payload["n_test"], payload["prior"]) == (10, 30, "tiny-cpu")
    assert set(payload["test"]) == METRICS | {"coverage"}
    assert payload["test"]["spearman"] > 0.8 and payload["test"]["acc10"] > 0.8
    with MeasurementStore(profiled["db"]) as store:
        known = store.device("new-board")
    assert known["config"] is None and known["kind"] is None and known["source"] is None
    predictor = LatencyPredictor.load(predictor_path("new-board", profiled["data"]))
    assert predictor.device == "new-board" and predictor.meta["family"] == "calibrated"
    # the device is known now: a second fit names it without creating it again
    again = invoke(*args)
    assert again.exit_code == 0 and "new device" not in again.output


def test_few_shot_options_need_networks_and_a_fitted_prior(profiled, tmp_path):
    result = invoke("fit", "--device", "tiny-cpu", "--db", profiled["db"], "--train", 10)
    assert "need --networks" in str(result.exception)
    nets = networks_jsonl(profiled, tmp_path / "few.jsonl", 12)
    args = ["fit", "--device", "b2", "--db", profiled["db"], "--networks", nets]
    result = invoke(*args, "--prior", "nowhere", "--data-dir", tmp_path)
    assert "no predictor for device 'nowhere'" in str(result.exception)
    result = invoke(*args, "--train", 12, "--data-dir", tmp_path)
    assert "--train 12: needs at least 2 networks to fit and 1 to score, of 12" in str(
        result.exception
    )


def test_predict_answers_each_network_in_input_order(profiled, tmp_path):
    from latkit.devices import load_device
    from latkit.profilers import get_profiler
    from latkit.profilers.session import time_network
    from latkit.spaces import load_space
    from latkit.workflows.predict import predict

    (_, network), (_, other) = load_space("proxyless-tiny").sample_networks(2, seed=21)
    arch = tmp_path / "mine.config"
    arch.write_text(json.dumps(network.to_config()))
    db = tmp_path / "own.sqlite"  # a store holding one timing of `network` on this CPU
    with MeasurementStore(db) as store:
        profiler = get_profiler(load_device(profiled["device"]))
        measured = time_network(profiler, store, network, origin="test").median_ms
    nets = tmp_path / "nets.jsonl"
    lines = [{"ops": [op.key for op in other.ops], "name": "other", "latency_ms": 1.5}]
    lines.append({"ops": [op.to_dict() for op in network.ops]})
    nets.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "predict.json"
    args = ["predict", "--device", "tiny-cpu", "--arch", arch, "--networks", nets, "--ops"]
    result = invoke(*args, "--db", db, "--data-dir", profiled["data"], "--json", out)
    assert result.exit_code == 0, result.output
    entries = json.loads(out.read_text())["networks"]
    assert [e["name"] for e in entries] == ["mine", "other", "nets.jsonl:2"]
    assert entries[0]["measured_ms"] == measured and entries[1]["measured_ms"] == 1.5
    assert entries[0]["predicted_ms"] == entries[2]["predicted_ms"] > 0
    for entry in entries:
        interval = entry["interval"]
        assert interval["level"] == 0.9 and interval["low_ms"] < entry["predicted_ms"]
        assert interval["high_ms"] is None or entry["predicted_ms"] < interval["high_ms"]
        ops = entry["ops"]
        assert {op["source"] for op in ops} <= {"table", "zero", "networks"}  # all profiled
        assert sum(op["share"] for op in ops) == pytest.approx(1.0)
    assert "from" in result.output and "table" in result.output
    # the same in Python, in one call
    (again,) = predict("tiny-cpu", [arch], db=db, data_dir=profiled["data"])
    assert again.predicted_ms == entries[0]["predicted_ms"] and again.measured_ms == measured
    result = invoke("predict", "--device", "tiny-cpu", "--data-dir", profiled["data"])
    assert "nothing to predict" in str(result.exception)
