"""LUT import/export in both dialects on the published tables, and CSV imports, in real SQLite."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from latkit.errors import LatkitError
from latkit.ops import OP_FIELDS, OpSpec, detect_dialect, from_key, to_key
from latkit.predictors import export_lut, fit_device, import_lut, import_measurements, read_lut
from latkit.predictors.fit import ops_of
from latkit.store import MeasurementStore

DATA = Path(__file__).resolve().parent / "data"
TRIM = DATA / "luts" / "proxylessnas" / "mobile_trim.yaml"
OFA_160 = DATA / "luts" / "ofa-note10" / "160_lookup_table.yaml"
OFA_224 = DATA / "luts" / "ofa-note10" / "224_lookup_table.yaml"


@pytest.fixture
def store(tmp_path):
    with MeasurementStore(tmp_path / "store.sqlite") as s:
        yield s


def test_proxylessnas_round_trip_reproduces_every_key_and_mean(store, tmp_path):
    original = yaml.safe_load(TRIM.read_text())
    dialect, count = import_lut(store, TRIM, "phone")
    assert (dialect, count) == ("proxylessnas", len(original))
    out = tmp_path / "trim.yaml"
    assert export_lut(store, "phone", "proxylessnas", out) == len(original)
    exported = yaml.safe_load(out.read_text())
    assert list(exported) == list(original)
    for key, entry in original.items():
        assert exported[key]["mean"] == entry["mean"], key
        assert exported[key]["count"] == entry["count"], key
        assert exported[key]["var"] == pytest.approx(entry["var"], rel=1e-12), key


def test_ofa_round_trip_keeps_the_ofa_key_dialect(store, tmp_path):
    original = yaml.safe_load(OFA_160.read_text())
    dialect, _ = import_lut(store, OFA_160, "note10")
    assert dialect == "ofa"
    out = tmp_path / "ofa.yaml"
    export_lut(store, "note10", "ofa", out)
    exported = yaml.safe_load(out.read_text())
    assert set(exported) == set(original)
    for key, entry in original.items():
        assert exported[key]["mean"] == entry["mean"], key
        assert exported[key]["std"] == pytest.approx(entry["std"], rel=1e-12), key
    # the same rows in the other dialect: expand becomes the ratio, var replaces std
    export_lut(store, "note10", "proxylessnas", out)
    other = yaml.safe_load(out.read_text())
    assert len(other) == len(original)
    assert all(detect_dialect(k) == "proxylessnas" for k in other)
    for key, entry in other.items():
        op = from_key(key, "proxylessnas")
        assert original[to_key(op, "ofa")]["mean"] == entry["mean"]


def test_imported_rows_keep_count_mean_and_spread(store):
    import_lut(store, TRIM, "phone")
    frame = store.dataframe("phone")
    row = frame[frame["key"] == "Logits-input:7x7x1280-output:1000"].iloc[0]
    assert row["median_ms"] == row["mean_ms"] == pytest.approx(0.3096415478615071)
    assert row["std_ms"] == pytest.approx(math.sqrt(0.05583766681628091))
    assert row["runs"] == 982 and row["cv"] == pytest.approx(row["std_ms"] / row["mean_ms"])
    assert (
        set(frame["runtime"]) == {"imported"} and frame["origin"].str.startswith("imported").all()
    )
    assert store.device("phone")["config"] is None


def test_several_resolution_files_build_one_table(store, tmp_path):
    import_lut(store, OFA_160, "note10")
    import_lut(store, OFA_224, "note10")
    frame = store.dataframe("note10")
    assert frame["env_id"].nunique() == 1
    assert {160, 224} <= set(frame.loc[frame["type"] == "conv", "input_hw"])
    report = fit_device(store, "note10", data_dir=tmp_path)
    assert report.n_train + report.n_test == len(frame)


def test_bad_luts_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("Conv-input:224x224x3-output:112x112x32: {count: 3}\n")
    with pytest.raises(LatkitError, match="bad.yaml: key 'Conv-input.*needs a mapping with `mean`"):
        read_lut(bad)
    bad.write_text("Pool-input:7x7x3-output:1x1x3: {count: 3, mean: 1.0, std: 0.1}\n")
    with pytest.raises(LatkitError, match="bad.yaml: key 'Pool-input"):
        read_lut(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(LatkitError, match="YAML mapping"):
        read_lut(bad)
    key = "Logits-input:7x7x1280-output:1000"
    for value, expected in [
        ("{count: 3, mean: .inf}", "mean must be a positive number"),
        ("{count: 3, mean: 1.0, std: -0.1}", "var, std and count must be at least 0"),
        ("{count: -3, mean: 1.0, std: 0.1}", "var, std and count must be at least 0"),
    ]:
        bad.write_text(f"{key}: {value}\n")
        with pytest.raises(LatkitError, match=f"bad.yaml: key '{key}': {expected}"):
            read_lut(bad)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*OP_FIELDS, "latency_ms"])
        writer.writeheader()
        writer.writerows(rows)


def _trim_rows() -> list[dict]:
    table = yaml.safe_load(TRIM.read_text())
    return [{**from_key(k).to_dict(), "latency_ms": v["mean"]} for k, v in table.items()]


def test_import_measurements_stores_every_row(store, tmp_path):
    rows = _trim_rows()
    path = tmp_path / "phone.csv"
    _write_csv(path, rows)
    assert import_measurements(store, path, "phone-csv") == len(rows)
    frame = store.dataframe("phone-csv")
    assert sorted(frame["median_ms"]) == sorted(r["latency_ms"] for r in rows)
    assert set(frame["key"]) == {from_key(k).key for k in yaml.safe_load(TRIM.read_text())}


def test_import_measurements_reports_the_bad_line_and_stores_nothing(store, tmp_path):
    rows = _trim_rows()
    rows[3]["cin"] = "sixteen"  # data row 4 = line 5 (the header is line 1)
    path = tmp_path / "phone.csv"
    _write_csv(path, rows)
    with pytest.raises(LatkitError, match=r"phone\.csv:5: op field cin must be an integer"):
        import_measurements(store, path, "phone-csv")
    assert store.dataframe("phone-csv").empty
    rows[3]["cin"] = 16
    rows[7]["latency_ms"] = "-2"
    _write_csv(path, rows)
    with pytest.raises(LatkitError, match=r"phone\.csv:9: latency_ms must be a positive number"):
        import_measurements(store, path, "phone-csv")


def test_import_measurements_checks_the_columns(store, tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("type,input_hw,cin,latency,colour\nconv,224,3,1.0,red\n")
    with pytest.raises(LatkitError, match="cols.csv:1: missing column.*cout, latency_ms.*colour"):
        import_measurements(store, path, "x")


def test_import_measurements_reads_the_columns_latkit_measurements_writes(store, tmp_path):
    path = tmp_path / "exported.csv"
    path.write_text(
        "key,type,input_hw,cin,cout,kernel,median_ms,mean_ms,std_ms,runs,exact,block,device,"
        "env_id,runtime,origin\n"
        "k,conv,8,3,8,3,0.5,0.55,0.01,30,True,4,cpu,abc,onnxruntime,measured\n"
        "k,conv,8,3,16,3,0.7,,,,,,cpu,abc,onnxruntime,measured\n"
    )
    assert import_measurements(store, path, "again") == 2
    frame = store.dataframe("again").set_index("cout")
    first, second = frame.loc[8], frame.loc[16]
    assert (first["median_ms"], first["mean_ms"], first["std_ms"]) == (0.5, 0.55, 0.01)
    assert (first["runs"], first["block"], bool(first["exact"])) == (30, 4, True)
    assert first["cv"] == pytest.approx(0.01 / 0.55)
    assert second["median_ms"] == second["mean_ms"] == 0.7 and math.isnan(second["std_ms"])
    assert (second["runs"], second["cv"], bool(second["exact"])) == (0, 0.0, False)
    assert set(frame["runtime"]) == {"imported"}  # the environment columns are not imported


def test_efficientnet_rows_import_and_export_in_both_dialects(store, tmp_path):
    """A CSV of EfficientNet-B0 / MnasNet-A1 ops: `se_style` is a column like the other op
    fields, empty or absent means MobileNetV3's, and the LUTs written from it read back."""
    effnet = OpSpec(
        "mbconv", 56, 24, 24, kernel=3, expand=6, se=True, act="swish", skip=True, se_style="effnet"
    )
    ops = [effnet, effnet.replace(act="relu", kernel=5), effnet.replace(se_style="mbv3")]
    ops.append(OpSpec("conv", 224, 3, 32, kernel=3, stride=2, act="swish"))
    rows = [{**op.to_dict(), "latency_ms": 1.0 + i} for i, op in enumerate(ops)]
    rows[2]["se_style"] = ""
    rows[3]["se_style"] = ""
    path = tmp_path / "effnet.csv"
    _write_csv(path, rows)
    assert import_measurements(store, path, "b0") == 4
    assert set(ops_of(store.dataframe("b0"))) == set(ops)
    legacy = tmp_path / "legacy.csv"  # written before se_style existed
    legacy.write_text(
        "type,input_hw,cin,cout,kernel,expand,se,act,latency_ms\nmbconv,14,16,16,3,4,1,hswish,0.5\n"
    )
    import_measurements(store, legacy, "old")
    assert ops_of(store.dataframe("old"))[0].se_style == "mbv3"
    for dialect in ("proxylessnas", "ofa"):
        out = tmp_path / f"b0-{dialect}.yaml"
        assert export_lut(store, "b0", dialect, out) == 4
        read_dialect, entries = read_lut(out)
        assert read_dialect == dialect
        assert {e.op: e.mean for e in entries} == {op: 1.0 + i for i, op in enumerate(ops)}


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("std_ms", "-1", "std_ms must be a finite number, at least 0"),
        ("runs", "2.5", "runs must be a whole number"),
        ("exact", "maybe", "exact must be True or False"),
        ("block", "0", "block must be a whole number from 1"),
        ("median_ms", "nan", "median_ms must be a positive number"),
    ],
)
def test_bad_statistics_name_their_line_and_store_nothing(store, tmp_path, column, value, expected):
    path = tmp_path / "bad.csv"
    header = ["type", "input_hw", "cin", "cout", "median_ms", column]
    good = {"type": "conv", "input_hw": "8", "cin": "3", "cout": "8", "median_ms": "0.5"}
    lines = [",".join(dict.fromkeys(header)), ",".join({**good, column: "1"}.values())]
    lines.append(",".join({**good, column: value}.values()))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LatkitError, match=rf"bad\.csv:3: {expected}"):
        import_measurements(store, path, "x")
    assert store.devices() == [] and store.dataframe().empty


def test_a_device_file_is_registered_only_once_its_table_is_read(store, tmp_path, quick_device):
    from latkit.devices import load_device

    config = load_device(quick_device)
    bad = tmp_path / "bad.yaml"
    bad.write_text("Conv-input:224x224x3-output:112x112x32: {count: 3}\n")
    with pytest.raises(LatkitError, match="needs a mapping with `mean`"):
        import_lut(store, bad, config)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("type,input_hw,cin,cout,latency_ms\nconv,8,3,8,zero\n")
    with pytest.raises(LatkitError, match="bad.csv:2"):
        import_measurements(store, bad_csv, config)
    assert store.devices() == []
    import_lut(store, TRIM, config)
    assert store.device(config.name)["config"]["runtime"] == "onnxruntime"
    assert len(store.dataframe(config.name)) == 72
