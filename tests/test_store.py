"""The SQLite store: keyed rows, no duplicates, schema version, clear errors on bad paths."""

from __future__ import annotations

import os
import sqlite3

import pytest

from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.records import Environment, Stats
from latkit.store import SCHEMA_VERSION, MeasurementStore

ENV = Environment("onnxruntime", "1.0", 1, 1, "cpu-model")
OP = OpSpec("mbconv", 28, 40, 40, kernel=5, expand=6, skip=True)


def stats(ms: float) -> Stats:
    return Stats(ms, ms, 0.1, ms - 0.1, ms + 0.1, ms - 0.05, ms + 0.05, 0.01, 50)


def test_rows_are_keyed_and_replaced_not_duplicated(tmp_path):
    path = tmp_path / "s.sqlite"
    with MeasurementStore(path) as store:
        store.add("dev", OP, stats(1.0), ENV)
        store.add("dev", OP, stats(2.0), ENV)
        other = Environment("onnxruntime", "1.0", 2, 1, "cpu-model")
        store.add("dev", OP, stats(3.0), other)
        assert store.measured_keys("dev", ENV.env_id) == {OP.key}
        frame = store.dataframe("dev")
    assert len(frame) == 2
    assert sorted(frame["median_ms"]) == [2.0, 3.0]
    assert frame["skip"].dtype == bool and frame["se"].dtype == bool
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2


def test_env_id_ignores_info_but_not_extra():
    a = Environment("torch", "2", 1, 8, "h", extra={"dtype": "float16"}, info={"sm_mhz": 1})
    b = Environment("torch", "2", 1, 8, "h", extra={"dtype": "float16"}, info={"sm_mhz": 2})
    c = Environment("torch", "2", 1, 8, "h", extra={"dtype": "float32"})
    assert a.env_id == b.env_id != c.env_id


def test_networks_table(tmp_path):
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        ops = (OP, OP.replace(kernel=3))
        assert store.network_stats("dev", ops, ENV.env_id) is None
        store.add_network("dev", ops, stats(5.0), ENV, name="n")
        assert store.network_stats("dev", ops, ENV.env_id).median_ms == 5.0
        assert len(store.networks("dev")) == 1


def test_schema_mismatch_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    MeasurementStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(LatkitError, match="schema version 99"):
        MeasurementStore(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_path_is_clear(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(LatkitError, match="cannot open the measurement store"):
        MeasurementStore(folder / "s.sqlite")


def test_path_that_cannot_exist_is_clear(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LatkitError, match="--db"):
        MeasurementStore(blocker / "s.sqlite")


def test_read_only_filesystem_is_clear():
    # /proc refuses new files even to root, so this holds in CI as well
    with pytest.raises(LatkitError, match="cannot open the measurement store"):
        MeasurementStore("/proc/latkit/s.sqlite")
