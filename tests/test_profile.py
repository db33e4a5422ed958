"""Profiling the local CPU with real onnxruntime and torch, into a real SQLite store.

Interruption tests kill a real `latkit profile` process (SIGKILL and Ctrl-C) and resume it.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from latkit.cli import app
from latkit.errors import LatkitError
from latkit.spaces import load_space
from latkit.store import MeasurementStore, read_measurements
from tests.conftest import ctrl_c_reaches_it, write_device

CSV_COLUMNS = [
    "key",
    "type",
    "input_hw",
    "cin",
    "cout",
    "stride",
    "kernel",
    "expand",
    "groups",
    "se",
    "act",
    "skip",
    "batch",
    "se_style",
    "median_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "p10_ms",
    "p90_ms",
    "cv",
    "runs",
    "runtime",
    "runtime_version",
    "threads",
    "host",
]


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_profile_limit_json_csv_and_resume(tmp_path, runtime):
    device = write_device(tmp_path / "dev.yaml", name=f"cpu-{runtime}", runtime=runtime)
    db, summary = tmp_path / "s.sqlite", tmp_path / "summary.json"
    _invoke(
        "profile",
        "--device",
        str(device),
        "--space",
        "proxyless-tiny",
        "--db",
        str(db),
        "--limit",
        "5",
        "--json",
        str(summary),
    )
    data = json.loads(summary.read_text())
    assert set(data) == {
        "device",
        "label",
        "ops",
        "measured",
        "skipped",
        "median_cv",
        "retried",
        "rows",
        "unstable",
        "busy",
        "median_busy_cores",
        "unstable_keys",
        "wall_s",
        "timed_s",
    }
    assert data["device"] == f"cpu-{runtime}" and data["ops"] == data["measured"] == 5
    assert data["skipped"] == 0 and data["rows"] == 5
    # which rows (if any) are unstable, or timed while busy, depends on the machine's load
    expected = {op.key for op in load_space("proxyless-tiny").distinct_ops()[:5]}
    assert set(data["unstable_keys"]) <= expected and data["unstable"] == len(data["unstable_keys"])
    assert 0 <= data["busy"] <= data["unstable"]
    assert data["median_busy_cores"] is None or data["median_busy_cores"] >= 0
    assert 0 < data["timed_s"] < data["wall_s"]

    rerun = _invoke(
        "profile",
        "--device",
        str(device),
        "--space",
        "proxyless-tiny",
        "--db",
        str(db),
        "--limit",
        "7",
    )
    assert "5 of 7 ops already stored" in rerun.output
    assert " of 7 rows unstable" in rerun.output  # the summary's last word
    csv = tmp_path / "rows.csv"
    _invoke("measurements", "--device", f"cpu-{runtime}", "--db", str(db), "--csv", str(csv))
    frame = pd.read_csv(csv)
    from_python = read_measurements(db, f"cpu-{runtime}")
    assert list(from_python.columns) == list(frame.columns) and len(from_python) == len(frame)
    assert list(frame.columns[: len(CSV_COLUMNS) - 4]) == CSV_COLUMNS[:-4]
    assert set(CSV_COLUMNS) <= set(frame.columns)
    assert list(frame.columns[-3:]) == ["busy_cores", "steal", "waited"]  # appended at the end
    expected = [op.key for op in load_space("proxyless-tiny").distinct_ops()[:7]]
    assert sorted(frame["key"]) == sorted(expected)
    assert (frame["runtime"] == runtime).all() and (frame["threads"] == 1).all()
    assert (frame["min_ms"] <= frame["median_ms"]).all()
    assert (frame["median_ms"] <= frame["max_ms"]).all()
    assert (frame["runs"] == 10).all()  # 5 runs x 2 rounds

    _invoke(
        "profile",
        "--device",
        str(device),
        "--space",
        "proxyless-tiny",
        "--db",
        str(db),
        "--limit",
        "2",
        "--fresh",
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2


def test_spaces_command_lists_counts():
    result = _invoke("spaces")
    assert "proxyless-mobile" in result.output and "70" in result.output
    assert "proxyless-tiny" in result.output and "40" in result.output


def _rows(location: str) -> list[tuple[str, float]]:
    """(key, measured_at) of every op row; none while the store does not exist yet."""
    try:
        with MeasurementStore(location) as store:
            frame = store.dataframe()
    except LatkitError:
        return []
    return list(zip(frame["key"], frame["measured_at"]))


@pytest.mark.parametrize(
    ("sig", "backend"),
    [(signal.SIGKILL, "sqlite"), (signal.SIGINT, "sqlite"), (signal.SIGKILL, "postgresql")],
    ids=["kill-9", "ctrl-c", "kill-9-postgresql"],
)
def test_interrupted_profile_loses_nothing_and_resumes(tmp_path, sig, backend, request):
    device = write_device(
        tmp_path / "dev.yaml", timing={"warmup": 5, "runs": 40, "rounds": 2, "max_cv": 1.0}
    )
    db = str(tmp_path / "s.sqlite")
    if backend == "postgresql":
        db = request.getfixturevalue("postgres").database()
        MeasurementStore(db).close()
    cmd = [
        sys.executable,
        "-c",
        "from latkit.cli import main; main()",
        "profile",
        "--device",
        str(device),
        "--space",
        "proxyless-tiny",
        "--db",
        db,
    ]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    proc = subprocess.Popen(cmd, preexec_fn=ctrl_c_reaches_it, **pipes)
    deadline = time.time() + 120
    while len(_rows(db)) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    kept = dict(_rows(db))
    assert 8 <= len(kept) < 40, "the profile finished before it could be interrupted"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err

    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    rows = _rows(db)
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)) == 40
    assert sorted(keys) == sorted(op.key for op in load_space("proxyless-tiny").distinct_ops())
    assert all(dict(rows)[k] == t for k, t in kept.items())  # finished rows were not redone


def test_profile_into_postgres_then_fit_from_it(tmp_path, postgres):
    url = postgres.database()
    device = write_device(tmp_path / "dev.yaml", name="shared-cpu")
    _invoke(
        "profile",
        "--device",
        str(device),
        "--space",
        "proxyless-tiny",
        "--limit",
        "12",
        "--db",
        url,
    )
    out = tmp_path / "fit.json"
    data = tmp_path / "data"
    _invoke("fit", "-d", "shared-cpu", "--db", url, "--data-dir", str(data), "--json", str(out))
    fitted = json.loads(out.read_text())
    timed = [op for op in load_space("proxyless-tiny").distinct_ops()[:12] if op.type != "zero"]
    assert fitted["device"] == "shared-cpu" and fitted["n_train"] + fitted["n_test"] == len(timed)
    assert (data / "shared-cpu" / "predictor.json").exists()
    assert len(read_measurements(url, "shared-cpu")) == 12


def test_time_network_sets_whole_network_beside_sum_of_ops(tmp_path):
    device = write_device(tmp_path / "dev.yaml")
    space = load_space("proxyless-tiny")
    arch = tmp_path / "net.config"
    arch.write_text(json.dumps(space.network([1, 6, 0, 6, 2, 3]).to_config()))
    db, out = tmp_path / "s.sqlite", tmp_path / "nets.json"
    _invoke(
        "time-network",
        "--device",
        str(device),
        "--arch",
        str(arch),
        "--db",
        str(db),
        "--json",
        str(out),
    )
    (row,) = json.loads(out.read_text())["networks"]
    assert row["network"] == "net" and row["measured_ms"] > 0
    with sqlite3.connect(db) as conn:
        ops = dict(conn.execute("SELECT key, median_ms FROM measurements"))
        assert conn.execute("SELECT COUNT(*) FROM networks").fetchone()[0] == 1
    timed = [op for op in space.network([1, 6, 0, 6, 2, 3]).ops if op.type != "zero"]
    assert row["sum_of_ops_ms"] == pytest.approx(sum(ops[op.key] for op in timed))


def test_only_unstable_re_measures_exactly_the_flagged_rows(tmp_path):
    device = write_device(tmp_path / "dev.yaml")
    db, out = tmp_path / "s.sqlite", tmp_path / "summary.json"
    args = ["profile", "--device", str(device), "--space", "proxyless-tiny", "--db", str(db)]
    _invoke(*args, "--limit", "6")
    keys = [op.key for op in load_space("proxyless-tiny").distinct_ops()[:6]]
    flagged = set(keys[1:3])
    with sqlite3.connect(db) as conn:  # as if 2 rows were timed busy, the others quiet
        conn.execute("UPDATE measurements SET unstable = 0")
        marks = ", ".join("?" * len(flagged))
        conn.execute(f"UPDATE measurements SET unstable = 1 WHERE key IN ({marks})", [*flagged])
    before = dict(_rows(str(db)))
    result = _invoke(*args, "--limit", "6", "--only-unstable", "--json", str(out))
    after = dict(_rows(str(db)))
    assert set(after) == set(keys)
    assert {k for k in keys if after[k] != before[k]} == flagged  # only they were re-timed
    first = result.output.splitlines()[0]
    assert first.startswith("2 of 6 rows unstable") and first.endswith("; re-measuring them")
    data = json.loads(out.read_text())
    assert (data["measured"], data["skipped"], data["rows"]) == (2, 4, 6)
    assert set(data["unstable_keys"]) <= flagged  # re-timed rows may be flagged again
    again = _invoke(*args, "--limit", "6", "--only-unstable")
    if data["unstable"] == 0:
        assert "0 of 6 rows unstable; nothing to re-measure" in again.output
    else:  # still busy: the last line says how to re-measure them
        assert "--only-unstable re-measures them" in " ".join(again.output.split())


def test_only_unstable_refuses_fresh_and_fleets(tmp_path):
    device = write_device(tmp_path / "dev.yaml")
    other = write_device(tmp_path / "other.yaml", name="other-cpu")
    db = tmp_path / "s.sqlite"
    base = ["profile", "--device", str(device), "--space", "proxyless-tiny", "--db", str(db)]
    for extra in (["--fresh"], ["--no-resume"], ["--device", str(other)]):
        result = CliRunner().invoke(app, [*base, *extra, "--only-unstable"])
        assert result.exit_code != 0 and "--only-unstable" in str(result.exception)
    assert not db.exists()  # refused before anything was stored
