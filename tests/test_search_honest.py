"""Honest search reports: F's error on the result is one it made before seeing the result's
timing, the result is timed afresh, a missed hard budget fails the command, bad numbers and
targets out of F's range are refused before any work, and no search replaces another's files.

Everything runs for real: the `fitted` fixture of `test_search_cli` profiles proxyless-tiny on
this CPU and fits F; the searches time their results on the same CPU.
"""

from __future__ import annotations

import copy
import json
import math
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import write_device
from test_search_cli import fitted  # noqa: F401 (the module fixture: a profiled, fitted CPU)

from latkit.cli import main
from latkit.predictors import load_predictor
from latkit.predictors.fit import stored_networks
from latkit.search.trainer import SearchConfig
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from latkit.workflows.defaults import free_cores, usable_cores
from latkit.workflows.search import LoopTerms, default_out_dir, run_search, space_predictor

SPACE = load_space("proxyless-tiny")


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`latkit ARGS` through the real entry point: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["latkit", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def rows(db: Path) -> list:
    """Every row of every table of a SQLite store, in a stable order."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, sorted(map(repr, conn.execute(f"SELECT * FROM {t}")))) for t in sorted(tables)]
    finally:
        conn.close()


def nothing_in(folder: Path) -> bool:
    """No file in `folder` (the --out callback creates it, to know that it can)."""
    return not folder.exists() or not any(folder.iterdir())


def span(fitted) -> tuple[float, float]:  # noqa: F811
    table = fitted["table"]
    return table.fastest()[1], table.slowest()[1]


# --- A: F's error, from before it saw the network, on a fresh timing ---------------------------


def test_the_error_is_the_prediction_from_before_any_refit_saw_the_network(fitted, tmp_path):  # noqa: F811
    """F told a network overhead far too high: the loop refits it round by round, yet each
    round's prediction is the one F made before that round's timing reached it (replayed here
    with `fit_overhead` alone: no level fitted on the loop's own timings), and the result's error
    compares that prediction with one more, fresh timing."""
    wrong = space_predictor(load_predictor(fitted["device"].name, fitted["data_dir"]), SPACE, 1)
    fastest, slowest = span(fitted)
    wrong.overhead_ms += 0.3 * (fastest + slowest) / 2
    told = copy.deepcopy(wrong)
    target = round(fastest + 0.3 * (fastest + slowest) / 2 + 0.5 * (slowest - fastest), 4)
    config = SearchConfig(target_ms=target, epochs=0, seed=0)
    result = run_search(
        fitted["device"], config, space=SPACE, predictor=wrong, final_epochs=0, out_dir=tmp_path
    )
    assert len(result.rounds) >= 2, "a 30% error must start another round"
    replay, timed = copy.deepcopy(told), []
    for rnd in result.rounds:
        ops = tuple(SPACE.network(rnd.arch).ops)
        if rnd.predicted_round == rnd.index:  # first derived in this round
            assert rnd.predicted_ms == pytest.approx(replay.predict_network(ops), rel=1e-9)
        assert not rnd.seen  # no store: F's samples are this loop's timings alone
        timed.append((ops, rnd.measured_ms))
        if rnd.refit_s > 0:
            replay.fit_overhead(timed, near_ms=target)
    first = result.rounds[result.predicted_round - 1]
    assert first.arch == result.arch and first.predicted_round == result.predicted_round
    assert result.predicted_ms == first.predicted_ms
    assert result.final_timing_s > 0 and result.measured_ms > 0
    assert result.error == pytest.approx(
        (result.predicted_ms - result.measured_ms) / result.measured_ms
    )
    assert result.loop_s == pytest.approx(sum(r.refit_s + r.timing_s for r in result.rounds))
    saved = json.loads((tmp_path / "result.json").read_text())
    assert (saved["predicted_round"], saved["error"]) == (result.predicted_round, result.error)
    assert saved["predicted_seen"] is False
    assert saved["rounds"][0]["predicted_round"] == 1


def test_a_prediction_from_a_network_f_has_a_timing_of_says_so(fitted):  # noqa: F811
    """A network among F's samples (a calibration network, or one an earlier search timed) has
    no prediction blind to its timing: F's terms know which networks they were refit on."""
    with MeasurementStore(fitted["db"]) as store:
        samples = stored_networks(store, fitted["device"].name)
    terms = LoopTerms(space_predictor(fitted["predictor"], SPACE, 1), near_ms=samples[0][1])
    terms.refit(samples[1:])
    assert terms.holds(samples[1][0]) and not terms.holds(samples[0][0])
    terms.refit(samples)
    assert terms.holds(samples[0][0])


def test_a_missed_hard_budget_fails_the_command_after_writing_the_results(
    fitted,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    """Timed at batch 8 (another device file), a network derived for T at batch 1 misses
    the hard budget: exit status 1 and one line saying by how much, with the results written."""
    slow = write_device(tmp_path / "slow.yaml", name="slow-cpu", batch_size=8)
    fastest, slowest = span(fitted)
    target = round(fastest + 0.5 * (slowest - fastest), 4)
    out, json_path = tmp_path / "out", tmp_path / "result.json"
    code, stdout, stderr = run_cli(
        monkeypatch,
        capsys,
        "search",
        "-d",
        fitted["device_file"],
        "-t",
        target,
        "--hard-budget",
        "--measure-on",
        slow,
        "--rounds",
        1,
        "--epochs",
        0,
        "--final-epochs",
        0,
        "--db",
        tmp_path / "s.sqlite",
        "--data-dir",
        fitted["data_dir"],
        "--out",
        out,
        "--json",
        json_path,
    )
    lines = [line for line in stderr.splitlines() if line.strip()]
    payload = json.loads(json_path.read_text())
    measured = payload["measured_ms"]
    assert code == 1, stdout + stderr
    assert lines == [
        f"hard budget missed: measured {measured:.4g} ms is {measured / target - 1:.1%} over "
        f"T {target:.4g} ms"
    ]
    assert payload["budget_missed"] == lines[0] and payload["measured_on"] == "slow-cpu"
    assert json.loads((out / "result.json").read_text())["budget_missed"] == lines[0]
    assert (out / "net.config").is_file()


# --- B: limits on the inputs --------------------------------------------------------------------


CORES = usable_cores()


@pytest.mark.parametrize(
    ("args", "option", "limit"),
    [
        (["-t", "nan"], "--target-ms", "> 0"),
        (["-t", "inf"], "--target-ms", "> 0"),
        (["-t", "0"], "--target-ms", "> 0"),
        (["--epochs", "99999"], "--epochs", "10000"),
        (["--warmup-epochs", "-1"], "--warmup-epochs", "0"),
        (["--final-epochs", "99999"], "--final-epochs", "10000"),
        (["--arch-lr", "0"], "--arch-lr", "> 0"),
        (["--arch-lr", "nan"], "--arch-lr", "> 0"),
        (["--arch-lr", "1e6"], "--arch-lr", "at most 10"),
        (["--batch-size", "1"], "--batch-size", "2"),
        (["--batch-size", "99999"], "--batch-size", "65536"),
        (["--rounds", "0"], "--rounds", "1"),
        (["--rounds", "999"], "--rounds", "100"),
        (["--train-threads", "-1"], "--train-threads", "0"),
        (["--train-threads", str(CORES + 1)], "--train-threads", str(CORES)),
        (["--seed", "-1"], "--seed", "0"),
        (["--lam", "nan", "--loss", "add-linear"], "--lam", ">= 0"),
        (["--nproc", "0"], "--nproc", "1"),
    ],
)
def test_numbers_out_of_range_are_one_line_errors(
    args,
    option,
    limit,
    fitted,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    """One line naming the option and its limit, and nothing stored or written."""
    before = rows(fitted["db"])
    out = tmp_path / "out"
    common = ["--db", fitted["db"], "--data-dir", fitted["data_dir"], "--out", out]
    target = ["-t", str(sum(span(fitted)) / 2)] if "-t" not in args else []
    code, _, err = run_cli(
        monkeypatch, capsys, "search", "-d", fitted["device_file"], *target, *args, *common
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert option in lines[0] and limit in lines[0] and "Traceback" not in err
    assert rows(fitted["db"]) == before and nothing_in(out)


@pytest.mark.parametrize("where", ["below", "above"])
def test_a_target_outside_fs_range_is_refused_with_the_range(
    where,
    fitted,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    fastest, slowest = span(fitted)
    target = fastest / 2 if where == "below" else slowest * 3
    before = rows(fitted["db"])
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        monkeypatch,
        capsys,
        "search",
        "-d",
        fitted["device_file"],
        "-t",
        target,
        "--db",
        fitted["db"],
        "--data-dir",
        fitted["data_dir"],
        "--out",
        out,
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    off = 1 - target / fastest if where == "below" else target / slowest - 1
    assert f"--target-ms {target:g} is {off:.1%} {where} the" in lines[0]
    assert f"{fastest:.4g} .. {slowest:.4g} ms" in lines[0]
    assert "training on" not in stdout  # refused before anything was set up to train
    assert rows(fitted["db"]) == before and nothing_in(out)


# --- C: nothing overwritten ---------------------------------------------------------------------


def test_a_second_search_never_replaces_the_first_ones_results(
    fitted,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    fastest, slowest = span(fitted)
    target = round(fastest + 0.4 * (slowest - fastest), 4)
    data_dir = tmp_path / "data"
    (data_dir / "search-cpu").mkdir(parents=True)
    predictor = fitted["data_dir"] / "search-cpu" / "predictor.json"
    (data_dir / "search-cpu" / "predictor.json").write_bytes(predictor.read_bytes())
    args = ["search", "-d", fitted["device_file"], "-t", target, "--db", fitted["db"]]
    args += ["--data-dir", data_dir, "--no-measure", "--final-epochs", 0, "--train-threads", 1]
    first = [*args, "--epochs", 1, "--warmup-epochs", 0, "--batch-size", 64]
    code, _, err = run_cli(monkeypatch, capsys, *first)
    assert code == 0, err
    folder = default_out_dir(data_dir, "search-cpu", SPACE.name, target)
    names = ("net.config", "result.json", "history.csv", "checkpoint.pt")
    kept = {name: (folder / name).read_bytes() for name in names}

    code, _, err = run_cli(monkeypatch, capsys, *args, "--epochs", 0)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "earlier search" in lines[0] and "--overwrite" in lines[0] and "--resume" in lines[0]
    assert {name: (folder / name).read_bytes() for name in names} == kept

    code, _, err = run_cli(monkeypatch, capsys, *args, "--epochs", 0, "--overwrite", "--resume")
    assert code == 2 and "--overwrite" in err

    code, _, err = run_cli(monkeypatch, capsys, *args, "--epochs", 0, "--overwrite")
    assert code == 0, err
    # replaced as a whole: no history or checkpoint of the first run is left beside the new one
    assert (folder / "net.config").is_file() and (folder / "result.json").is_file()
    assert not (folder / "history.csv").exists() and not (folder / "checkpoint.pt").exists()


# --- D: training threads ------------------------------------------------------------------------


def test_free_cores_are_the_usable_ones_less_the_load():
    threads, cores, load = free_cores()
    assert cores == usable_cores() and 1 <= threads <= cores and math.isfinite(load)


def test_the_default_training_threads_are_printed(fitted, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Unless --train-threads is given, training takes the cores free now, and says so."""
    fastest, slowest = span(fitted)
    args = ["search", "-d", fitted["device_file"], "-t", round((fastest + slowest) / 2, 4)]
    args += ["--epochs", 0, "--final-epochs", 1, "--no-measure", "--db", fitted["db"]]
    args += ["--data-dir", fitted["data_dir"]]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--out", tmp_path / "a")
    assert code == 0, err
    picked = [line for line in out.splitlines() if line.startswith("training on ")]
    assert len(picked) == 1, out
    threads = int(picked[0].split()[2])
    assert 1 <= threads <= usable_cores()
    assert f"{usable_cores()} usable core(s)" in picked[0]
    code, out, err = run_cli(
        monkeypatch, capsys, *args, "--train-threads", 1, "--out", tmp_path / "b"
    )
    assert code == 0, err
    assert "training on " not in out
