"""Searches end to end: a real profile of proxyless-tiny on this CPU, a real fitted F, digits.

The module fixture profiles the space with onnxruntime (quick timing: its ops, then its
calibration networks) and fits F with `fit_device`; every search below uses that predictor and
times its result on the same CPU.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ctrl_c_reaches_it, write_device
from test_search_imagefolder import image_tree
from typer.testing import CliRunner

from latkit.cli import app
from latkit.devices import load_device
from latkit.errors import LatkitError
from latkit.predictors import fit_device, load_predictor
from latkit.search.datasets import Dataset, Split, load_dataset
from latkit.search.latency import LatencyTable
from latkit.search.trainer import SearchConfig
from latkit.spaces import Network, load_space
from latkit.store import MeasurementStore
from latkit.workflows.profile import profile_space
from latkit.workflows.search import run_search, space_predictor, torch_threads

SPACE = load_space("proxyless-tiny")
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, (LatkitError, SystemExit)):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("search")
    device_file = write_device(root / "search-cpu.yaml", name="search-cpu")
    device = load_device(device_file)
    db, data_dir = root / "store.sqlite", root / "data"
    with MeasurementStore(db) as store:
        profile_space(device, SPACE, store)
        fit_device(store, device.name, data_dir=data_dir)
    predictor = load_predictor(device.name, data_dir)
    # F as the search prices proxyless-tiny's networks (their group's network terms)
    table = LatencyTable.from_predictor(space_predictor(predictor, SPACE, 1), SPACE)
    return {
        "root": root,
        "device_file": device_file,
        "device": device,
        "db": db,
        "data_dir": data_dir,
        "predictor": predictor,
        "table": table,
    }


def test_a_tighter_target_finds_a_faster_architecture(fitted, tmp_path):
    data = load_dataset("digits", SPACE.input_hw, seed=0)
    table = fitted["table"]
    _, fastest = table.fastest()
    _, slowest = table.slowest()
    predicted = {}
    for name, target in (("tight", fastest), ("loose", slowest)):
        # an arch step after every weight step: enough steps for α to move in a short test
        config = SearchConfig(
            target_ms=target,
            epochs=2,
            warmup_epochs=1,
            arch_every=1,
            arch_lr=0.05,
            loss="lagrangian",
            seed=0,
        )
        with torch_threads(1):
            result = run_search(
                fitted["device"],
                config,
                space=SPACE,
                dataset=data,
                predictor=fitted["predictor"],
                final_epochs=0,
                measure=False,
                out_dir=tmp_path / name,
            )
        assert result.predicted_ms == pytest.approx(table.of_arch(result.arch), rel=1e-5)
        predicted[name] = (result.history[-1].expected_ms, result.predicted_ms)
        history = result.history
        assert [r.phase for r in history] == ["warmup", "search", "search"]
        assert history[-1].arch_steps > 0
    # Same seed, same batches: only T differs. The target-seeking loss drives E[LAT] toward each T
    # (ProxylessNAS's add-linear would not do for this: under Adam its latency part moves α by
    # about ±lr per step whatever T is, so the two runs differ only by noise in the table), and
    # the tight run's argmax architecture is never slower than the loose one's.
    assert predicted["tight"][0] < predicted["loose"][0], predicted
    assert predicted["tight"][1] <= predicted["loose"][1], predicted


def test_search_command_end_to_end(fitted, tmp_path):
    table = fitted["table"]
    _, fastest = table.fastest()
    _, slowest = table.slowest()
    target = round(fastest + 0.3 * (slowest - fastest), 4)
    out, json_path = tmp_path / "out", tmp_path / "result.json"
    result = invoke(
        "search",
        "--device",
        fitted["device_file"],
        "--target-ms",
        target,
        "--epochs",
        1,
        "--warmup-epochs",
        0,
        "--final-epochs",
        1,
        "--batch-size",
        64,
        "--hard-budget",
        "--train-threads",
        1,
        "--db",
        fitted["db"],
        "--data-dir",
        fitted["data_dir"],
        "--out",
        out,
        "--json",
        json_path,
    )
    payload = json.loads(json_path.read_text())  # written even where the budget was missed
    # the result's fresh timing decides: over T (or under 0.9 T) fails the command, saying so
    missed = payload["budget_missed"]
    assert result.exit_code == (1 if missed else 0), result.output
    assert missed is None or missed in result.output
    assert "E[LAT]" in result.output and "entropy" in result.output and "val acc" in result.output
    assert {"arch", "target_ms", "predicted_ms", "measured_ms", "accuracy", "search_s"} <= set(
        payload
    )
    assert payload["target_ms"] == target
    assert (payload["train_device"], payload["world_size"]) == ("cpu", 1)
    assert payload["predicted_ms"] <= target  # --hard-budget
    assert payload["measured_ms"] > 0 and 0 <= payload["accuracy"] <= 1
    assert payload["range_ms"] == pytest.approx([fastest, slowest])
    rounds = payload["rounds"]
    assert 1 <= len(rounds) <= 3 and payload["measured_on"] == "search-cpu"
    for number, row in enumerate(rounds, start=1):
        assert row["round"] == number and row["predicted_ms"] <= target
        assert f"round {number}: predicted {row['predicted_ms']:.4f} ms" in result.output
    # the result is timed afresh; its prediction is that of the round it was first derived in
    chosen = [r for r in rounds if r["arch_index"] == payload["arch_index"]]
    assert chosen and payload["predicted_round"] == chosen[0]["predicted_round"]
    assert payload["predicted_ms"] == chosen[0]["predicted_ms"]
    fresh = (payload["predicted_ms"] - payload["measured_ms"]) / payload["measured_ms"]
    assert payload["error"] == pytest.approx(fresh)
    assert "result timed afresh" in result.output
    assert payload["hard_budget"] is True and isinstance(payload["predicted_seen"], bool)
    assert "measured / T" in result.output
    network = Network.load(out / "net.config")
    assert list(SPACE.arch_of(network)) == payload["arch_index"]
    assert (out / "search.png").stat().st_size > 0
    assert len((out / "history.csv").read_text().splitlines()) == 2
    assert (out / "checkpoint.pt").is_file()
    with MeasurementStore(fitted["db"]) as store:
        timed = store.networks(fitted["device"].name)
        env_id = fitted["predictor"].meta["env_id"]
        stored = store.network_stats(fitted["device"].name, tuple(network.ops), env_id)
    assert (timed["origin"] == "search").sum() >= len({tuple(r["arch_index"]) for r in rounds})
    assert stored.median_ms == payload["measured_ms"]  # the fresh timing, stored last


def test_no_epochs_gives_the_range_at_once(fitted, tmp_path):
    table = fitted["table"]
    _, fastest = table.fastest()
    _, slowest = table.slowest()
    target = round((fastest + slowest) / 2, 4)
    json_path = tmp_path / "range.json"
    common = ["--db", fitted["db"], "--data-dir", fitted["data_dir"], "--out", tmp_path]
    result = invoke(
        "search",
        "-d",
        fitted["device_file"],
        "-t",
        target,
        "--epochs",
        0,
        "--final-epochs",
        0,
        "--no-measure",
        "--json",
        json_path,
        *common,
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(json_path.read_text())
    assert payload["range_ms"] == pytest.approx([fastest, slowest])
    assert f"{fastest:.4g} .. {slowest:.4g} ms predicted" in result.output
    assert payload["rounds"] == [] and payload["measured_ms"] is None
    assert abs(payload["predicted_ms"] / target - 1) <= 0.02  # derived within T ± 2%
    assert not (tmp_path / "history.csv").exists()


class Notes:
    """A reporter that keeps the notes it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def task(self, description, total):
        return lambda amount=1.0: None

    def note(self, text, level="info"):
        self.lines.append(text)


def test_the_loop_refits_a_wrong_f_and_times_again(fitted, tmp_path):
    """F told a network overhead 40% of T too high, and no stored networks to correct it from:
    round 1 disagrees, its timing becomes the calibration, the network terms are refit near T,
    and the next derivation lands closer."""
    table = fitted["table"]
    _, fastest = table.fastest()
    _, slowest = table.slowest()
    target = round(fastest + 0.5 * (slowest - fastest), 4)
    wrong = space_predictor(load_predictor(fitted["device"].name, fitted["data_dir"]), SPACE, 1)
    wrong.overhead_ms += 0.4 * target
    told = wrong.overhead_ms
    notes = Notes()
    config = SearchConfig(target_ms=target, epochs=0, seed=0)
    common = dict(space=SPACE, predictor=wrong, final_epochs=0, reporter=notes)
    result = run_search(fitted["device"], config, out_dir=tmp_path / "alone", **common)
    first, *rest = result.rounds
    assert rest, "a 40% error must start another round"
    assert abs(first.error) > 0.2
    # each round is timed once, so one round may catch a burst of load: the best of the later
    # rounds shows the refit, not the last alone
    assert min(abs(r.error) for r in rest) < abs(first.error) / 2
    assert first.refit_s > 0 and result.loop_s > 0
    assert any(line.startswith("refit F's network terms") for line in notes.lines)
    assert sum(line.startswith("round ") for line in notes.lines) == len(result.rounds)
    saved = json.loads((tmp_path / "alone" / "result.json").read_text())
    assert [r["round"] for r in saved["rounds"]] == list(range(1, len(result.rounds) + 1))
    assert "predictor" in saved["files"]  # the refit F, beside the result
    assert wrong.overhead_ms == told  # the caller's predictor is left alone
    # with the store's calibration networks, the terms are refit near T before deriving
    notes.lines.clear()
    with MeasurementStore(fitted["db"]) as store:
        run_search(fitted["device"], config, out_dir=tmp_path / "stored", store=store, **common)
    assert any(line.startswith("F's network terms refit near") for line in notes.lines)


def test_search_against_imported_data(fitted, tmp_path, published):
    db, data = tmp_path / "s.sqlite", tmp_path / "data"
    lut = published / "luts" / "proxylessnas" / "mobile_trim.yaml"
    assert invoke("import-lut", lut, "--device", "proxyless-phone", "--db", db).exit_code == 0
    assert (
        invoke("fit", "--device", "proxyless-phone", "--db", db, "--data-dir", data).exit_code == 0
    )
    common = ["--space", "proxyless-mobile", "--target-ms", 80, "--epochs", 0, "--final-epochs", 0]
    common += ["--db", db, "--data-dir", data]
    out = tmp_path / "phone.json"
    result = invoke("search", "--device", "proxyless-phone", *common, "--json", out)
    assert result.exit_code == 0, result.output
    assert "nothing was measured" in result.output
    payload = json.loads(out.read_text())
    assert payload["measured_ms"] is None and payload["measured_on"] is None
    assert "nothing was measured" in payload["note"]
    assert abs(payload["predicted_ms"] / 80 - 1) <= 0.02
    # the same search, its result timed through a device file, replacing the first one's files
    out = tmp_path / "timed.json"
    args = ["--measure-on", fitted["device_file"], "--rounds", 1, "--json", out, "--overwrite"]
    result = invoke("search", "--device", "proxyless-phone", *common, *args)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["measured_on"] == "search-cpu" and payload["measured_ms"] > 0
    assert len(payload["rounds"]) == 1 and payload["note"] == ""


def test_reinforce_strategy_runs(fitted, tmp_path):
    digits = load_dataset("digits", SPACE.input_hw, seed=0)
    subset = Split(digits.train.x[:320], digits.train.y[:320])  # real digits, fewer of them
    data = Dataset("digits", subset, digits.val, digits.test, 10)
    _, fastest = fitted["table"].fastest()
    config = SearchConfig(
        target_ms=fastest * 1.5, strategy="reinforce", epochs=1, warmup_epochs=0, seed=0
    )
    result = run_search(
        fitted["device"],
        config,
        space=SPACE,
        dataset=data,
        predictor=fitted["predictor"],
        final_epochs=0,
        measure=False,
        out_dir=tmp_path,
    )
    assert result.history[-1].arch_steps == 2  # 10 weight steps, one REINFORCE step per 5
    assert Network.load(tmp_path / "net.config").ops == result.network.ops


def test_search_without_a_predictor_says_what_to_run(fitted, tmp_path):
    result = invoke(
        "search",
        "--device",
        fitted["device_file"],
        "--target-ms",
        0.2,
        "--db",
        fitted["db"],
        "--data-dir",
        tmp_path / "empty",
    )
    assert result.exit_code != 0
    message = str(result.exception)
    assert "latkit profile" in message and "latkit fit" in message


def test_bad_options_are_one_line_errors(fitted, tmp_path):
    common = ["--db", fitted["db"], "--data-dir", fitted["data_dir"], "--out", tmp_path]
    result = invoke("search", "-d", fitted["device_file"], "-t", 0.2, "--loss", "l1", *common)
    assert isinstance(result.exception, LatkitError) and "--loss" in str(result.exception)
    result = invoke("search", "-d", fitted["device_file"], "-t", 0.2, "--mode", "x", *common)
    assert isinstance(result.exception, LatkitError) and "--mode" in str(result.exception)
    result = invoke("search", "-d", fitted["device_file"], "-t", 0.0001, "--hard-budget", *common)
    assert isinstance(result.exception, LatkitError) and "fastest" in str(result.exception)
    result = invoke(
        "search", "-d", fitted["device_file"], "-t", 0.2, "--batch-size", 33, "--nproc", 2, *common
    )
    assert isinstance(result.exception, LatkitError)
    assert "--batch-size 33 does not split evenly over 2 processes" in str(result.exception)
    if not torch.cuda.is_available():
        result = invoke(
            "search", "-d", fitted["device_file"], "-t", 0.2, "--train-device", "cuda", *common
        )
        assert isinstance(result.exception, LatkitError)
        assert "--train-device cuda: no usable CUDA GPU" in str(result.exception)


def test_search_reads_cifar10_folder_errors(fitted, tmp_path):
    result = invoke(
        "search",
        "-d",
        fitted["device_file"],
        "-t",
        0.2,
        "--dataset",
        f"cifar10:{tmp_path / 'missing'}",
        "--db",
        fitted["db"],
        "--data-dir",
        fitted["data_dir"],
        "--out",
        tmp_path,
    )
    assert isinstance(result.exception, LatkitError)
    assert "does not exist" in str(result.exception)


def test_default_output_folder_is_under_the_device(fitted):
    from latkit.workflows.search import default_out_dir

    path = default_out_dir(Path("data"), "pixel", "proxyless-tiny", 12.5)
    assert path == Path("data/pixel/search-proxyless-tiny-12.5ms")


ROOT = Path(__file__).resolve().parents[1]


def search_args(fitted, *extra) -> list[str]:
    table = fitted["table"]
    _, fastest = table.fastest()
    _, slowest = table.slowest()
    target = round(fastest + 0.3 * (slowest - fastest), 4)
    args = ["search", "--device", fitted["device_file"], "--target-ms", target]
    args += ["--db", fitted["db"], "--data-dir", fitted["data_dir"], "--train-threads", 1]
    return [str(a) for a in (*args, *extra)]


def latkit_process(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m latkit ARGS` as a user runs it, in its own process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "latkit", *args]
    return subprocess.Popen(command, env=env, preexec_fn=ctrl_c_reaches_it, **kwargs)


def history_rows(path: Path) -> list[dict]:
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row.pop("seconds")
    return rows


def wait_for_epoch(process: subprocess.Popen, checkpoint: Path, epoch: int) -> None:
    """Poll until `checkpoint` records `epoch` finished epochs (it is replaced atomically)."""
    deadline = time.monotonic() + 300
    while process.poll() is None:
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} within 300 s"
        if checkpoint.exists():
            state = torch.load(checkpoint, weights_only=True)["state"]
            if state["progress"]["epoch"] >= epoch:
                return
        time.sleep(0.02)


def test_search_killed_then_interrupted_resumes_to_the_same_result(fitted, tmp_path):
    """kill -9 after the first checkpoint, --resume, Ctrl-C in the middle of the last epoch,
    --resume again: the same architecture, α and history as a search never interrupted."""
    args = search_args(
        fitted,
        "--epochs",
        2,
        "--warmup-epochs",
        1,
        "--final-epochs",
        0,
        "--no-measure",
        "--batch-size",
        64,
    )
    whole = tmp_path / "whole"
    assert invoke(*args, "--out", whole).exit_code == 0
    out = tmp_path / "interrupted"
    checkpoint = out / "checkpoint.pt"
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}

    process = latkit_process(*args, "--out", str(out), **pipes)
    wait_for_epoch(process, checkpoint, 1)
    process.kill()  # SIGKILL: no handler runs, nothing is flushed
    _, stderr = process.communicate()
    assert process.returncode == -9, stderr[-2000:]
    assert not (out / "result.json").exists()
    state = torch.load(checkpoint, weights_only=True)["state"]
    assert (state["progress"]["epoch"], state["progress"]["step"]) == (1, 0)

    process = latkit_process(*args, "--out", str(out), "--resume", **pipes)
    wait_for_epoch(process, checkpoint, 2)
    process.send_signal(signal.SIGINT)  # Ctrl-C: finish the step, save, exit 130
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    said = " ".join(stderr.split())
    assert "interrupted: search stopped at epoch 3, step" in said and "--resume" in said
    state = torch.load(checkpoint, weights_only=True)["state"]
    assert state["progress"]["epoch"] == 2 and state["progress"]["step"] >= 1

    result = invoke(*args, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    done, again = (json.loads((d / "result.json").read_text()) for d in (whole, out))
    assert again["arch_index"] == done["arch_index"] and again["arch"] == done["arch"]
    final = [torch.load(d / "checkpoint.pt", weights_only=True)["state"] for d in (whole, out)]
    alphas = [k for k in final[0]["net"] if k.endswith(".alpha")]
    assert alphas and all(torch.equal(final[0]["net"][k], final[1]["net"][k]) for k in alphas)
    assert history_rows(out / "history.csv") == history_rows(whole / "history.csv")
    # the checkpoint resumes only the search it came from
    other = invoke(*args[:-2], "--batch-size", 128, "--out", whole, "--resume")
    assert isinstance(other.exception, LatkitError)
    assert "batch_size = 64, not 128" in str(other.exception)


def test_two_processes_through_nproc_search_and_rank_0_alone_writes(fitted, tmp_path):
    out, json_path = tmp_path / "out", tmp_path / "result.json"
    args = search_args(
        fitted,
        "--epochs",
        1,
        "--warmup-epochs",
        0,
        "--final-epochs",
        1,
        "--batch-size",
        64,
        "--out",
        out,
        "--json",
        json_path,
        "--nproc",
        2,
    )
    process = latkit_process(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    payload = json.loads(json_path.read_text())
    assert (payload["train_device"], payload["world_size"]) == ("cpu", 2)
    assert payload["measured_ms"] > 0 and 0 <= payload["accuracy"] <= 1
    assert stdout.count("net.config:") == 1  # one result table, from rank 0
    assert len((out / "history.csv").read_text().splitlines()) == 2
    assert Network.load(out / "net.config").ops
    with MeasurementStore(fitted["db"]) as store:
        timed = store.networks(fitted["device"].name)
    assert (timed["origin"] == "search").sum() >= 1


def test_search_on_an_image_folder(fitted, tmp_path, torchvision):
    root = image_tree(tmp_path / "tree", train=8, val=2)
    out, json_path = tmp_path / "out", tmp_path / "result.json"
    args = search_args(
        fitted,
        "--dataset",
        f"imagefolder:{root}",
        "--epochs",
        1,
        "--warmup-epochs",
        1,
        "--final-epochs",
        1,
        "--batch-size",
        16,
        "--no-measure",
        "--out",
        out,
        "--json",
        json_path,
    )
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    payload = json.loads(json_path.read_text())
    assert 0 <= payload["accuracy"] <= 1 and len(payload["arch_index"]) == len(SPACE.layers())
    assert len((out / "history.csv").read_text().splitlines()) == 3
