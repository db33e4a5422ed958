"""What latkit writes, latkit reads back, through the real CLI and real SQLite stores:
`measurements --csv` -> `import-measurements`, and `export-lut` -> `import-lut` (both dialects).

The ops come from a real (short) onnxruntime profile of proxyless-tiny on this CPU, and from the
published once-for-all and ProxylessNAS tables.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from latkit.cli import app
from latkit.errors import LatkitError
from latkit.records import STAT_FIELDS
from latkit.store import MeasurementStore
from tests.conftest import DATA, write_device

TRIM = DATA / "luts" / "proxylessnas" / "mobile_trim.yaml"
OFA_160 = DATA / "luts" / "ofa-note10" / "160_lookup_table.yaml"


def invoke(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, (LatkitError, SystemExit)):
        raise result.exception
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Path:
    """A store with 12 ops of proxyless-tiny timed on this CPU (quick plan)."""
    root = tmp_path_factory.mktemp("roundtrip")
    device = write_device(root / "cpu.yaml", name="cpu")
    db = root / "s.sqlite"
    invoke("profile", "-d", device, "--space", "proxyless-tiny", "--limit", 12, "--db", db)
    return db


def rows(db: Path, device: str) -> pd.DataFrame:
    with MeasurementStore(db) as store:
        return store.dataframe(device).set_index("key").sort_index()


def same(a: pd.Series, b: pd.Series) -> bool:
    """Equal values, an unknown (NaN) matching an unknown."""
    return all(x == y or (pd.isna(x) and pd.isna(y)) for x, y in zip(a, b, strict=True))


def test_measurements_csv_imports_back_with_every_statistic(profiled, tmp_path):
    csv = tmp_path / "cpu.csv"
    invoke("measurements", "-d", "cpu", "--db", profiled, "--csv", csv)
    assert "median_ms" in csv.read_text().splitlines()[0]
    out = invoke("import-measurements", csv, "-d", "cpu-again", "--db", profiled)
    assert "imported 12 rows" in out
    original, back = rows(profiled, "cpu"), rows(profiled, "cpu-again")
    assert list(back.index) == list(original.index)
    for column in STAT_FIELDS:
        assert same(original[column], back[column]), column
    assert set(back["runtime"]) == {"imported"}  # the rows are imported data now


def test_a_csv_of_imported_rows_keeps_its_unknowns(tmp_path):
    """Rows with unknown statistics (a LUT's min, max, p10, p90) come back unknown, not 0."""
    db, csv = tmp_path / "s.sqlite", tmp_path / "phone.csv"
    invoke("import-lut", TRIM, "-d", "phone", "--db", db)
    invoke("measurements", "-d", "phone", "--db", db, "--csv", csv)
    invoke("import-measurements", csv, "-d", "phone-again", "--db", db)
    original, back = rows(db, "phone"), rows(db, "phone-again")
    assert len(back) == len(original) == 72
    for column in STAT_FIELDS:
        assert same(original[column], back[column]), column
    assert back["p10_ms"].isna().all() and back["min_ms"].isna().all()


@pytest.mark.parametrize("fmt", ["proxylessnas", "ofa"])
def test_export_lut_imports_back(profiled, tmp_path, fmt):
    if fmt == "ofa":  # once-for-all's own table: its stems are hswish, as the dialect assumes
        db, device = tmp_path / "ofa.sqlite", "note10"
        invoke("import-lut", OFA_160, "-d", device, "--db", db)
    else:
        db, device = profiled, "cpu"
    lut = tmp_path / f"{fmt}.yaml"
    invoke("export-lut", "-d", device, "--format", fmt, "--out", lut, "--db", db)
    out = invoke("import-lut", lut, "-d", f"{device}-lut", "--db", db)
    assert f"({fmt} dialect)" in out
    original, back = rows(db, device), rows(db, f"{device}-lut")
    original = original[original["type"] != "zero"]
    assert list(back.index) == list(original.index)
    assert same(original["mean_ms"], back["mean_ms"]) and same(original["runs"], back["runs"])
    for a, b in zip(original["std_ms"], back["std_ms"], strict=True):
        assert math.isclose(a, b, rel_tol=1e-12) or (math.isnan(a) and math.isnan(b))
