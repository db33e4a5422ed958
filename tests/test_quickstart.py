"""`latkit quickstart` end to end on this CPU: profile, fit, validate, search, time the result.

Run with reduced epochs and networks (the options exist for this) so that CI stays quick; the
full-size run's wall time is reported by the bench notes, never asserted.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from latkit.cli import app
from latkit.spaces import Network, load_space
from latkit.store import MeasurementStore

runner = CliRunner()


@pytest.mark.slow
def test_quickstart_runs_the_whole_job_and_resumes(tmp_path):
    db, data_dir, out = tmp_path / "qs.sqlite", tmp_path / "data", tmp_path / "qs.json"
    args = [
        "quickstart",
        "--db",
        str(db),
        "--data-dir",
        str(data_dir),
        "--json",
        str(out),
        "--networks",
        "4",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--final-epochs",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for stage in ("1/5 profiling", "2/5 calibrating", "3/5 validating", "4/5 searching"):
        assert stage in result.output
    assert "F ±10%" in result.output and "measured / T" in result.output
    assert "round 1: predicted" in result.output
    payload = json.loads(out.read_text())
    space = load_space("proxyless-tiny")
    assert payload["ops_profiled"] == len(space.distinct_ops())
    assert payload["validation"]["n"] == 4
    search = payload["search"]
    assert search["predicted_ms"] <= search["target_ms"]  # a hard budget
    assert search["measured_ms"] > 0 and 0 <= search["accuracy"] <= 1
    assert payload["measured_over_target"] == search["measured_ms"] / search["target_ms"]
    assert f"{payload['measured_over_target']:.3f}" in result.output
    assert 1 <= len(search["rounds"]) <= 3
    network = Network.load(search["files"]["net_config"])
    assert list(space.arch_of(network)) == search["arch_index"]
    assert (data_dir / "local-cpu" / "predictor.json").exists()
    with MeasurementStore(db) as store:
        rows = len(store.dataframe("local-cpu"))
        networks = store.networks("local-cpu")
    assert rows == len(space.distinct_ops())
    assert set(networks["origin"]) == {"calibrate", "validate", "search"}

    again = runner.invoke(app, args)  # everything measured is reused
    assert again.exit_code == 0, again.output
    assert f"resuming: {rows} of {rows} ops already stored" in again.output
    with MeasurementStore(db) as store:
        assert len(store.dataframe("local-cpu")) == rows
