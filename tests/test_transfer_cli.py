"""A new device in minutes, end to end: `import-networks`, `profile --networks N` and
`fit --transfer`, on a real SQLite store (and PostgreSQL) with real onnxruntime timings.

The store holds two other devices of proxyless-tiny: `src-a`, profiled op by op on this CPU
(with its calibration networks) and fitted, and `src-b`, known only by whole-network timings
imported from a JSONL. The new device, `new-cpu`, is timed on a few whole networks only.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from cli_support import fail
from typer.testing import CliRunner

from latkit.cli import app
from latkit.devices import load_device
from latkit.errors import LatkitError
from latkit.predictors import LatencyPredictor, predictor_path
from latkit.predictors.fit import ops_of
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from latkit.workflows.transfer import infer_space, space_sources
from tests.conftest import write_device

SPACE = "proxyless-tiny"
QUICK = {"warmup": 1, "runs": 3, "rounds": 2, "max_cv": 0.5}
runner = CliRunner()


def invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "120"})
    if result.exception and not isinstance(result.exception, (LatkitError, SystemExit)):
        raise result.exception
    return result


def ok(*args: object) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def snapshot(root: Path) -> dict[str, str | None]:
    """Every file under `root` by its sha256, every folder as None."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def scaled_jsonl(
    table: dict[str, float], path: Path, n: int, seed: int, scale: float, extra: float
):
    """`n` networks of the space whose latency is `scale` x the sum of their ops' timings in
    `table` (real ones, of src-a) plus `extra` ms: a device like this CPU, but slower."""
    lines = []
    for _, network in load_space(SPACE).sample_networks(n, seed=seed):
        ms = scale * sum(table.get(op.key, 0.0) for op in network.ops) + extra
        lines.append(json.dumps({"ops": [op.key for op in network.ops], "latency_ms": ms}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """src-a profiled and fitted, src-b imported from 12 networks, new-cpu's device file."""
    root = tmp_path_factory.mktemp("transfer")
    db, data = root / "store.sqlite", root / "data"
    src_a = write_device(root / "src-a.yaml", name="src-a", timing=QUICK)
    ok("profile", "--device", src_a, "--space", SPACE, "--db", db)
    ok("fit", "--device", "src-a", "--db", db, "--data-dir", data)
    with MeasurementStore(db) as store:
        frame = store.dataframe("src-a")
    table = dict(zip((op.key for op in ops_of(frame)), frame["median_ms"]))
    nets_b = scaled_jsonl(table, root / "b.jsonl", 12, seed=7, scale=1.7, extra=0.1)
    imported = ok("import-networks", nets_b, "--device", "src-b", "--db", db)
    new = write_device(root / "new.yaml", name="new-cpu", timing=QUICK)
    return dict(root=root, db=db, data=data, table=table, nets_b=nets_b, new=new, imported=imported)


@pytest.fixture(scope="module")
def few_shot(world) -> dict[str, str]:
    """new-cpu timed on 5 networks, then on 8 (the first 5 kept)."""
    args = ["profile", "--device", world["new"], "--space", SPACE, "--db", world["db"]]
    first = ok(*args, "--networks", 5)
    json_out = world["root"] / "few.json"
    second = ok(*args, "--networks", 8, "--json", json_out)
    return {"args": args, "first": first, "second": second, "json": json_out}


def last_cells(output: str) -> list[str]:
    """The last column of a printed table's rows (`profile --networks`: timed now or stored)."""
    rows = [line for line in output.splitlines() if line.startswith("│")]
    return [row.rstrip(" │").split("│")[-1].strip() for row in rows]


def networks_of(db, device: str):
    with MeasurementStore(db) as store:
        return store.networks(device)


def test_import_networks_stores_each_line_once_with_origin_imported(world):
    assert "imported 12 networks" in world["imported"] and "12 new, 0 updated" in world["imported"]
    before = networks_of(world["db"], "src-b")
    assert len(before) == 12 and set(before["origin"]) == {"imported"}
    assert set(before["runtime"]) == {"imported"} and before["arch_id"].is_unique
    again = ok("import-networks", world["nets_b"], "--device", "src-b", "--db", world["db"])
    assert "0 new, 12 updated" in again
    after = networks_of(world["db"], "src-b")
    assert len(after) == 12 and sorted(after["median_ms"]) == sorted(before["median_ms"])


def test_a_bad_jsonl_stores_nothing(world, tmp_path, monkeypatch, capsys):
    db = tmp_path / "s.sqlite"
    good = scaled_jsonl(world["table"], tmp_path / "good.jsonl", 3, seed=1, scale=1, extra=0)
    ok("import-networks", good, "--device", "known", "--db", db)
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[1].replace("latency_ms", "ms"), lines[2]]) + "\n")
    before = snapshot(tmp_path)
    for device in ("known", "fresh"):
        argv = ["import-networks", bad, "--device", device, "--db", db]
        line = fail(argv, monkeypatch, capsys)
        assert "bad.jsonl:2" in line and "latency_ms" in line
        assert snapshot(tmp_path) == before
    with MeasurementStore(db) as store:
        assert store.devices() == ["known"] and len(store.networks("known")) == 3


def test_profile_networks_times_n_networks_and_a_rerun_times_none(world, few_shot):
    assert last_cells(few_shot["first"]) == ["now"] * 5
    assert "networks picked with the F of: src-a, src-b" in few_shot["first"]
    assert "latkit fit --device new-cpu --transfer --db" in few_shot["first"]
    # 8 networks: the first 5 picks are those already timed (the picks are nested)
    payload = json.loads(few_shot["json"].read_text())
    assert [n["timed_now"] for n in payload["networks"]] == [False] * 5 + [True] * 3
    assert payload["sources"] == ["src-a", "src-b"]
    stored = networks_of(world["db"], "new-cpu")
    assert len(stored) == 8 and set(stored["origin"]) == {"few-shot"}
    again = ok(*few_shot["args"], "--networks", 8)
    assert last_cells(again) == ["stored"] * 8
    assert networks_of(world["db"], "new-cpu")["measured_at"].tolist() == (
        stored["measured_at"].tolist()
    )


def test_fit_transfer_draws_on_the_other_devices_and_predict_and_validate_use_it(
    world, few_shot, tmp_path
):
    out, data = tmp_path / "transfer.json", world["data"]
    args = ["fit", "--device", "new-cpu", "--transfer", "--db", world["db"], "--data-dir", data]
    printed = ok(*args, "--json", out)
    assert "transfer from 2 device(s) on 8 networks of proxyless-tiny" in printed
    assert "src-a" in printed and "src-b" in printed and "left out" in printed
    assert "model: " in printed
    payload = json.loads(out.read_text())
    assert payload["device"] == "new-cpu" and payload["space"] == SPACE
    assert set(payload["sources"]) == {"src-a", "src-b"} and payload["n_networks"] == 8
    assert payload["sources"]["src-a"]["fitted_on"] == "40 op rows"
    assert payload["sources"]["src-b"]["fitted_on"] == "12 networks"
    assert set(payload["shares"]) <= {"src-a", "src-b"} and payload["shares"]
    held = payload["held_out"]
    assert {"acc10", "spearman", "coverage"} <= set(held) and 0 <= held["coverage"] <= 1
    predictor = LatencyPredictor.load(predictor_path("new-cpu", data))
    assert predictor.meta["source"] == "transfer" and predictor.meta["runtime"] == "onnxruntime"
    # predict answers with it, beside the stored timing of a network it was fitted on
    nets = tmp_path / "nets.jsonl"
    stored = networks_of(world["db"], "new-cpu").iloc[0]
    nets.write_text(json.dumps({"ops": json.loads(stored["ops_json"]), "name": "picked"}) + "\n")
    answers, where = tmp_path / "predict.json", ["--db", world["db"], "--data-dir", data]
    ok("predict", "--device", "new-cpu", "--networks", nets, *where, "--json", answers)
    (entry,) = json.loads(answers.read_text())["networks"]
    assert entry["measured_ms"] == stored["median_ms"] and entry["predicted_ms"] > 0
    # validate times networks it never saw and scores it
    checked = tmp_path / "validate.json"
    args = ["validate", "--device", world["new"], "--space", SPACE, "--networks", 2]
    ok(*args, *where, "--json", checked)
    assert json.loads(checked.read_text())["n"] == 2


def test_too_few_networks_or_no_source_is_one_line_and_writes_nothing(
    world, tmp_path, monkeypatch, capsys
):
    db = tmp_path / "s.sqlite"
    two = scaled_jsonl(world["table"], tmp_path / "two.jsonl", 2, seed=3, scale=2, extra=0)
    ok("import-networks", two, "--device", "two-nets", "--db", db)
    before = snapshot(tmp_path)
    argv = ["fit", "--device", "two-nets", "--transfer", "--db", db, "--data-dir", tmp_path / "d"]
    line = fail(argv, monkeypatch, capsys)
    assert "has 2 timed network(s)" in line and "at least 3" in line
    assert snapshot(tmp_path) == before
    five = scaled_jsonl(world["table"], tmp_path / "five.jsonl", 5, seed=4, scale=2, extra=0)
    ok("import-networks", five, "--device", "five-nets", "--db", db)
    before = snapshot(tmp_path)
    argv[2] = "five-nets"
    assert "other devices" in fail(argv, monkeypatch, capsys)
    assert snapshot(tmp_path) == before


def test_options_that_do_not_go_together_are_one_line(world, monkeypatch, capsys):
    db, new = world["db"], world["new"]
    fit = ["fit", "--device", "new-cpu", "--db", db, "--transfer"]
    assert "--prior" in fail([*fit, "--prior", "src-a"], monkeypatch, capsys)
    assert "--networks" in fail([*fit, "--networks", world["nets_b"]], monkeypatch, capsys)
    assert "--calibrate" in fail([*fit, "--calibrate"], monkeypatch, capsys)
    assert "add --transfer" in fail(fit[:-1] + ["--space", SPACE], monkeypatch, capsys)
    line = fail([*fit, "--space", "proxyless-mobile"], monkeypatch, capsys)
    assert "0 timed network(s) of proxyless-mobile" in line
    profile = ["profile", "--device", new, "--networks", 3, "--db", db]
    assert "--only-unstable" in fail([*profile, "--only-unstable"], monkeypatch, capsys)
    assert "--limit" in fail([*profile, "--limit", 4], monkeypatch, capsys)
    assert "--networks" in fail([*profile, "--onnx", "any.onnx"], monkeypatch, capsys)
    line = fail([*profile, "--device", world["root"] / "src-a.yaml"], monkeypatch, capsys)
    assert "one --device" in line


def test_the_space_is_inferred_from_the_networks():
    tiny = load_space(SPACE)
    samples = [(net.ops, 1.0) for _, net in tiny.sample_networks(3, seed=2)]
    assert infer_space(samples).name == SPACE
    with pytest.raises(LatkitError, match="--space"):
        infer_space([])  # every space holds no ops at all: which one is not known


def test_a_saved_source_predictor_is_reused_only_while_it_matches_the_store(
    world, tmp_path, monkeypatch
):
    from latkit.workflows import transfer

    refits = []
    monkeypatch.setattr(transfer, "op_predictor", lambda *args: refits.append(args[1]))
    space = load_space(SPACE)
    with MeasurementStore(world["db"]) as store:
        (a, b) = space_sources(store, space, "new-cpu", world["data"])
    assert (a.name, b.name, refits) == ("src-a", "src-b", [])
    assert a.predictor.meta["source"] == "ops" and b.predictor.meta["source"] == "networks"
    db = tmp_path / "copy.sqlite"  # the same store, one of src-a's ops re-measured since
    with sqlite3.connect(world["db"]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
        copy.execute("UPDATE measurements SET measured_at = measured_at + 1e6 WHERE rowid = 1")
    with MeasurementStore(db) as store:
        space_sources(store, space, "new-cpu", world["data"])
        space_sources(store, space, "new-cpu", tmp_path / "nothing saved")
    assert refits == ["src-a", "src-a"]


def test_transfer_through_postgresql(world, tmp_path, postgres):
    url = postgres.database()
    table = world["table"]
    for name, scale, extra, seed in (("pg-a", 1.0, 0.05, 11), ("pg-b", 2.5, 0.2, 12)):
        nets = scaled_jsonl(table, tmp_path / f"{name}.jsonl", 6, seed, scale, extra)
        ok("import-networks", nets, "--device", name, "--db", url)
    target = scaled_jsonl(table, tmp_path / "target.jsonl", 6, seed=13, scale=1.5, extra=0.1)
    ok("import-networks", target, "--device", "pg-new", "--db", url)
    out = tmp_path / "fit.json"
    args = ["fit", "--device", "pg-new", "--transfer", "--db", url]
    ok(*args, "--data-dir", tmp_path / "data", "--json", out)
    payload = json.loads(out.read_text())
    assert set(payload["sources"]) == {"pg-a", "pg-b"} and payload["n_networks"] == 6
    # six networks of near-equal latency: their ranking is noise, their level is not (a source
    # off by its 1.5x scale would be ~33% off)
    assert payload["held_out"]["rmspe"] < 15


def test_import_refuses_a_repeated_network_and_a_device_latkit_timed(
    world, tmp_path, monkeypatch, capsys
):
    db = tmp_path / "copy.sqlite"
    with sqlite3.connect(world["db"]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    lines = world["nets_b"].read_text().splitlines()
    twice = tmp_path / "twice.jsonl"
    twice.write_text("\n".join([lines[0], lines[1], lines[0]]) + "\n")
    named = tmp_path / "named.jsonl"  # named lines are told apart by their numbers too
    named.write_text("\n".join(json.dumps({**json.loads(lines[0]), "name": n}) for n in "ab"))
    before = snapshot(tmp_path)
    line = fail(["import-networks", twice, "--device", "fresh", "--db", db], monkeypatch, capsys)
    assert "the same network twice (twice.jsonl:1 and twice.jsonl:3)" in line
    line = fail(["import-networks", named, "--device", "fresh", "--db", db], monkeypatch, capsys)
    assert "the same network twice (named.jsonl:1 and named.jsonl:2)" in line
    args = ["import-networks", world["nets_b"], "--device", "src-a", "--db", db]
    line = fail(args, monkeypatch, capsys)
    assert "'src-a' already holds op rows or networks timed by latkit" in line
    assert snapshot(tmp_path) == before


def test_a_known_device_name_imports_at_its_own_batch(tmp_path, world):
    db = tmp_path / "s.sqlite"
    batch2 = write_device(tmp_path / "b2.yaml", name="board-b2", batch_size=2)
    with MeasurementStore(db) as store:
        store.register_device(load_device(batch2))
    ok("import-networks", world["nets_b"], "--device", "board-b2", "--db", db)
    assert set(networks_of(db, "board-b2")["batch"]) == {2}


def test_a_device_with_zero_op_rows_only_is_no_source_and_no_crash(world, tmp_path):
    db = tmp_path / "copy.sqlite"
    with sqlite3.connect(world["db"]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    zero = tmp_path / "zero.csv"
    zero.write_text("type,input_hw,cin,cout,stride,skip,latency_ms\nzero,8,64,64,1,1,0.001\n")
    ok("import-measurements", zero, "--device", "zeros", "--db", db)
    with MeasurementStore(db) as store:
        names = [s.name for s in space_sources(store, load_space(SPACE), "new-cpu", world["data"])]
    assert names == ["src-a", "src-b"]


def test_a_few_op_rows_do_not_stop_a_transfer_fit_but_a_profile_does(world, few_shot, tmp_path):
    """Op rows that `time-network` or `profile --onnx` leave (here 3 of the space's ops) are no
    F of the space, so `fit --transfer` still fits from the networks; a profile of the space is
    (then `latkit fit` fits from it, and --transfer is refused)."""
    db = tmp_path / "copy.sqlite"
    with sqlite3.connect(world["db"]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    profile = ["profile", "--device", world["new"], "--space", SPACE, "--db", db]
    ok(*profile, "--limit", 3)
    out = tmp_path / "fit.json"
    fit = ["fit", "--device", "new-cpu", "--transfer", "--db", db, "--data-dir", tmp_path / "d"]
    ok(*fit, "--json", out)
    assert json.loads(out.read_text())["n_networks"] == 8
    ok(*profile)
    result = invoke(*fit)
    assert "'new-cpu' has op rows of proxyless-tiny" in str(result.exception)


def test_a_device_name_no_path_can_hold_and_a_binary_device_file_are_one_line(
    world, tmp_path, monkeypatch, capsys
):
    db = tmp_path / "s.sqlite"
    args = ["import-networks", world["nets_b"], "--db", db, "--device"]
    line = fail([*args, "x" * 3000], monkeypatch, capsys)
    assert "a device name may only hold" in line and "(at most 100)" in line
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    line = fail([*args, binary], monkeypatch, capsys)
    assert line == f"error: {binary}: not UTF-8 text, so no readable device file"
    assert not db.exists()
