"""The measurement store on both back ends (a real SQLite file, a real PostgreSQL server): keyed
rows, no duplicates even with concurrent writers, schema version and upgrade, clear errors."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3

import pytest
from readonly_support import read_only

from latkit.errors import LatkitError
from latkit.ops import OpSpec
from latkit.predictors.fit import ops_of
from latkit.records import LOAD_FIELDS, Environment, Stats
from latkit.store import SCHEMA_VERSION, TABLES, MeasurementStore, is_url, redact

ENV = Environment("onnxruntime", "1.0", 1, 1, "cpu-model")
OP = OpSpec("mbconv", 28, 40, 40, kernel=5, expand=6, skip=True)


def stats(ms: float, **flags) -> Stats:
    return Stats(ms, ms, 0.1, ms - 0.1, ms + 0.1, ms - 0.05, ms + 0.05, 0.01, 50, **flags)


def count(store: MeasurementStore, table: str = "measurements") -> int:
    return len(store.dataframe() if table == "measurements" else store.networks())


def test_rows_are_keyed_and_replaced_not_duplicated(store_location):
    with MeasurementStore(store_location) as store:
        store.add("dev", OP, stats(1.0), ENV)
        store.add("dev", OP, stats(2.0, exact=True, attempts=2), ENV)
        other = Environment("onnxruntime", "1.0", 2, 1, "cpu-model")
        store.add("dev", OP, stats(3.0), other)
        assert store.measured_keys("dev", ENV.env_id) == {OP.key}
        frame = store.dataframe("dev")
    assert len(frame) == 2
    assert sorted(frame["median_ms"]) == [2.0, 3.0]
    assert frame["skip"].dtype == bool and frame["se"].dtype == bool
    replaced = frame[frame["median_ms"] == 2.0].iloc[0]
    assert bool(replaced["exact"]) and replaced["attempts"] == 2 and not replaced["unstable"]
    assert replaced["expand"] == 6 and replaced["kernel"] == 5 and bool(replaced["skip"])
    with MeasurementStore(store_location) as store:  # reopening reads what was committed
        assert store.dataframe("dev")["median_ms"].tolist() == frame["median_ms"].tolist()


def test_sqlite_file_holds_one_row_per_key_and_its_version(tmp_path):
    path = tmp_path / "s.sqlite"
    with MeasurementStore(path) as store:
        store.add("dev", OP, stats(1.0), ENV)
        store.add("dev", OP, stats(2.0), ENV)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 1


def test_env_id_covers_extra_and_the_timing_plan_but_not_info():
    a = Environment("torch", "2", 1, 8, "h", extra={"dtype": "float16"}, info={"sm_mhz": 1})
    b = Environment("torch", "2", 1, 8, "h", extra={"dtype": "float16"}, info={"sm_mhz": 2})
    c = Environment("torch", "2", 1, 8, "h", extra={"dtype": "float32"})
    assert a.env_id == b.env_id != c.env_id
    quick = a.timed_with({"warmup": 2, "runs": 5})
    slow = a.timed_with({"warmup": 10, "runs": 50})
    assert len({a.env_id, quick.env_id, slow.env_id}) == 3
    assert quick.env_id == a.timed_with({"runs": 5, "warmup": 2}).env_id


def test_mixed_timing_plans_are_separate_rows(store_location):
    quick, slow = ENV.timed_with({"runs": 5}), ENV.timed_with({"runs": 50})
    with MeasurementStore(store_location) as store:
        store.add("dev", OP, stats(1.0), quick)
        assert store.measured_keys("dev", slow.env_id) == set()  # resuming never mixes plans
        store.add("dev", OP, stats(1.1), slow)
        frame = store.dataframe("dev")
    assert set(frame["timing"]) == {'{"runs": 5}', '{"runs": 50}'}
    assert frame["env_id"].nunique() == 2


def test_derived_statistics_read_back_as_unknown(store_location):
    derived = Stats(
        1.0, 1.0, 0.1, 0.9, 1.2, math.nan, math.nan, 0.02, 30, attempts=3, unstable=True
    )
    with MeasurementStore(store_location) as store:
        store.add("dev", OP, derived, ENV)
        ops = (OP, OP.replace(kernel=3))
        store.add_network("dev", ops, derived, ENV, name="n")
        row = store.dataframe("dev").iloc[0]
        back = store.network_stats("dev", ops, ENV.env_id)
    assert math.isnan(row["p10_ms"]) and math.isnan(row["p90_ms"])
    assert not row["exact"] and row["unstable"] and row["attempts"] == 3
    assert math.isnan(back.p10_ms) and not back.exact and back.unstable and back.attempts == 3
    assert (back.median_ms, back.runs, back.block) == (1.0, 30, 1)


def test_the_machines_load_is_stored_with_each_row_and_unknown_reads_as_nan(store_location):
    busy = Stats(
        1.0, 1.0, 0.1, 0.9, 1.2, 0.95, 1.1, 0.2, 30, unstable=True, busy_cores=1.7, steal=0.02
    )
    with MeasurementStore(store_location) as store:
        store.add("dev", OP, busy, ENV)
        store.add("dev", OP.replace(kernel=3), stats(2.0), ENV)  # a phone's: load unknown
        ops = (OP, OP.replace(kernel=3))
        store.add_network("dev", ops, busy, ENV, name="n")
        frame = store.dataframe("dev").set_index("kernel")
        back = store.network_stats("dev", ops, ENV.env_id)
    assert frame.loc[5, "busy_cores"] == 1.7 and frame.loc[5, "steal"] == 0.02
    assert math.isnan(frame.loc[3, "busy_cores"]) and math.isnan(frame.loc[3, "steal"])
    assert (back.busy_cores, back.steal, back.unstable) == (1.7, 0.02, True)


def test_networks_table(store_location):
    with MeasurementStore(store_location) as store:
        ops = (OP, OP.replace(kernel=3))
        assert store.network_stats("dev", ops, ENV.env_id) is None
        store.add_network("dev", ops, stats(5.0), ENV, name="n")
        store.add_network("dev", ops, stats(6.0, exact=True), ENV, name="n")
        assert store.network_stats("dev", ops, ENV.env_id) == stats(6.0, exact=True)
        assert len(store.networks("dev")) == 1


def test_devices_are_remembered_and_a_bare_name_keeps_the_file(store_location, quick_device):
    from latkit.devices import load_device

    config = load_device(quick_device)
    with MeasurementStore(store_location) as store:
        store.register_device(config)
        store.register_device(config.name)  # a later import under the name alone
        known = store.device(config.name)
        assert store.devices() == [config.name] and store.device("nope") is None
    assert known["config"]["runtime"] == "onnxruntime" and known["source"] == str(quick_device)


def test_delete_removes_one_environment(store_location):
    with MeasurementStore(store_location) as store:
        store.add("dev", OP, stats(1.0), ENV)
        store.add("dev", OP, stats(1.0), ENV.timed_with({"runs": 5}))
        assert store.delete("dev", ENV.env_id) == 1
        assert count(store) == 1


def _writer(location: str, worker: int, keys: int) -> None:
    with MeasurementStore(location) as store:
        store.register_device(f"dev{worker % 2}")
        for i in range(keys):
            op = OpSpec("mbconv", 28, 40, 40 + i, kernel=5, expand=6)
            store.add(f"dev{worker % 2}", op, stats(1.0 + worker), ENV)


def test_concurrent_writer_processes_never_duplicate(store_location):
    MeasurementStore(store_location).close()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(store_location, w, 12)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0] * 4
    with MeasurementStore(store_location) as store:
        frame = store.dataframe()
        assert sorted(store.devices()) == ["dev0", "dev1"]
    assert len(frame) == 24  # 2 devices x 12 keys, whoever wrote last
    assert not frame.duplicated(["device", "key", "env_id"]).any()


def test_schema_mismatch_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    MeasurementStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(LatkitError, match="schema version 99"):
        MeasurementStore(path)


V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE devices (name TEXT PRIMARY KEY, kind TEXT, runtime TEXT, config_json TEXT, source TEXT);
CREATE TABLE measurements (
    device TEXT NOT NULL, key TEXT NOT NULL, env_id TEXT NOT NULL,
    type TEXT, input_hw INTEGER, cin INTEGER, cout INTEGER, stride INTEGER, kernel INTEGER,
    expand REAL, groups INTEGER, se INTEGER, act TEXT, skip INTEGER, batch INTEGER,
    median_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL, p10_ms REAL, p90_ms REAL,
    cv REAL, runs REAL, runtime TEXT, runtime_version TEXT, threads INTEGER, host TEXT,
    device_model TEXT, temperature_c REAL, env_json TEXT, origin TEXT, measured_at REAL,
    PRIMARY KEY (device, key, env_id)
);
CREATE TABLE networks (
    device TEXT NOT NULL, arch_id TEXT NOT NULL, env_id TEXT NOT NULL, name TEXT,
    ops_json TEXT NOT NULL, median_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
    p10_ms REAL, p90_ms REAL, cv REAL, runs REAL, runtime TEXT, runtime_version TEXT,
    threads INTEGER, batch INTEGER, host TEXT, device_model TEXT, temperature_c REAL,
    env_json TEXT, origin TEXT, measured_at REAL, PRIMARY KEY (device, arch_id, env_id)
);
INSERT INTO measurements (device, key, env_id, type, input_hw, cin, cout, stride, kernel, expand,
    groups, se, act, skip, batch, median_ms, mean_ms, std_ms, min_ms, max_ms, p10_ms, p90_ms, cv,
    runs, runtime, runtime_version, threads, host, device_model, measured_at)
VALUES ('phone', 'k1', 'e1', 'conv', 8, 3, 8, 1, 3, 1, 1, 0, 'relu6', 0, 1,
        1, 1, 0.1, 0.9, 1.2, 0.9, 1.1, 0.01, 150, 'litert', 'benchmark_model sha256:abc', 1, 'soc',
        'Pixel', 1.0),
       ('cpu', 'k1', 'e2', 'conv', 8, 3, 8, 1, 3, 1, 1, 0, 'relu6', 0, 1,
        1, 1, 0.1, 0.9, 1.2, 0.9, 1.1, 0.01, 150, 'onnxruntime', '1.20', 1, 'EPYC', '', 2.0);
"""


def test_version_1_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
    with MeasurementStore(path) as store:
        frame = store.dataframe().set_index("device")
        store.add("cpu", OP, stats(2.0, exact=True), ENV)  # new rows go in beside the old ones
        assert count(store) == 3
    assert not frame.loc["phone", "exact"] and frame.loc["cpu", "exact"]  # derived vs raw
    assert (frame["block"] == 1).all() and frame["attempts"].isna().all()
    assert frame["unstable"].isna().all()  # not known for old rows, and not claimed
    assert (frame["se_style"] == "mbv3").all()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


#: the columns each older schema version lacks
MISSING = {2: (*LOAD_FIELDS, "se_style"), 3: ("se_style",)}


def _old_store(location: str, version: int = 2, row: str = "") -> None:
    """A store as latkit wrote it at schema `version` (2: before the machine's load was stored,
    3: before the SE style), holding one op row, created with the back end's own client."""
    statements = [
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        f"INSERT INTO schema_version VALUES ({version})",
    ]
    for table, (columns, key) in TABLES.items():
        body = ", ".join(f"{n} {kind}" for n, kind in columns if n not in MISSING[version])
        statements.append(f"CREATE TABLE {table} ({body}, PRIMARY KEY ({', '.join(key)}))")
    statements.append(
        row
        or "INSERT INTO measurements (device, key, env_id, median_ms, cv, runs, exact, unstable, "
        "measured_at) VALUES ('old', 'k1', 'e1', 1.5, 0.01, 50, 1, 0, 1.0)"
    )
    if is_url(location):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)
    else:
        with sqlite3.connect(location) as conn:
            for sql in statements:
                conn.execute(sql)


def test_version_2_store_gains_the_load_columns_after_the_old_ones(store_location):
    _old_store(store_location, 2)
    with MeasurementStore(store_location) as store:
        old = store.dataframe("old").iloc[0]
        store.add("new", OP, stats(2.0, busy_cores=0.4, steal=0.0), ENV)
        new = store.dataframe("new").iloc[0]
        columns, _ = store._query("SELECT * FROM measurements LIMIT 0")
        version = store._query("SELECT version FROM schema_version")[1]
    assert old["median_ms"] == 1.5 and not old["unstable"]  # old rows kept as they were
    assert math.isnan(old["busy_cores"]) and math.isnan(old["steal"])  # and their load unknown
    assert (new["busy_cores"], new["steal"]) == (0.4, 0.0)
    expected = [name for name, _ in TABLES["measurements"][0]]
    assert columns == expected and columns[-4:-1] == list(LOAD_FIELDS)
    assert [tuple(r) for r in version] == [(SCHEMA_VERSION,)]


def test_version_3_store_gains_the_se_style_and_old_rows_read_back_as_mbv3(store_location):
    old_op = OP.replace(kernel=3, se=True, act="hswish")
    fields = {**old_op.to_dict(), "se": 1, "skip": 1}
    del fields["se_style"]
    values = ", ".join(repr(v) for v in fields.values())
    _old_store(
        store_location,
        3,
        f"INSERT INTO measurements (device, key, env_id, {', '.join(fields)}, median_ms, "
        f"measured_at) VALUES ('dev', '{old_op.key}', 'e1', {values}, 1.5, 1.0)",
    )
    effnet = OP.replace(se=True, act="swish", se_style="effnet")
    with MeasurementStore(store_location) as store:
        store.add("dev", effnet, stats(2.0), ENV)
        frame = store.dataframe("dev")
        columns, _ = store._query("SELECT * FROM measurements LIMIT 0")
        version = store._query("SELECT version FROM schema_version")[1]
    assert sorted(ops_of(frame), key=str) == sorted([old_op, effnet], key=str)
    assert sorted(frame["se_style"]) == ["effnet", "mbv3"]
    assert columns == [name for name, _ in TABLES["measurements"][0]]
    assert columns[-1] == "se_style"
    assert [tuple(r) for r in version] == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 4


def test_read_only_sqlite_store_reads_and_refuses_writes_in_one_line(tmp_path):
    path = tmp_path / "ro" / "s.sqlite"
    with MeasurementStore(path) as store:
        store.add("dev", OP, stats(1.0), ENV)
    with read_only(path.parent) as folder:
        with MeasurementStore(folder / path.name) as store:
            assert len(store.dataframe("dev")) == 1
            with pytest.raises(LatkitError, match="cannot write the measurement store") as info:
                store.add("dev", OP.replace(kernel=3), stats(1.0), ENV)
    assert "\n" not in str(info.value) and str(folder / path.name) in str(info.value)


def test_read_only_postgres_role_reads_and_refuses_writes_in_one_line(postgres):
    url = postgres.database()
    with MeasurementStore(url) as store:
        store.add("dev", OP, stats(1.0), ENV)
    postgres.execute(
        url,
        "CREATE ROLE reader LOGIN",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader",
    )
    reader = url.replace("postgres@", "reader@")
    with MeasurementStore(reader) as store:
        assert len(store.dataframe("dev")) == 1
        with pytest.raises(LatkitError, match="cannot write the measurement store") as info:
            store.register_device("dev")
    assert "\n" not in str(info.value) and "permission denied" in str(info.value)
    postgres.execute(url, "DROP OWNED BY reader", "DROP ROLE reader")


def test_unreachable_server_is_one_line_without_the_password():
    with pytest.raises(LatkitError, match="cannot open the measurement store") as info:
        MeasurementStore("postgresql://me:s3cret@127.0.0.1:1/nodb")
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message and "me:***@127.0.0.1:1" in message
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("data/s.sqlite") == "data/s.sqlite"  # a path is no URL


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cret@[::1/db",  # libpq quotes a URL it cannot parse
        "postgresql:///db?password=s3cret&host=127.0.0.1&port=1",
        "POSTGRESQL://u:s3cret@127.0.0.1:1/db",
        "postgres://u@127.0.0.1:1/db?sslmode=disable&PASSWORD=s3cret",
    ],
)
def test_no_form_of_url_prints_its_password(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LatkitError, match="cannot open the measurement store") as info:
        MeasurementStore(url)
    assert "s3cret" not in str(info.value) and "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())  # no folder named after it


@pytest.mark.parametrize("url", ["mysql://u:s3cret@h/db", "sqlite:///x.sqlite"])
def test_another_scheme_is_refused_not_taken_for_a_path(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LatkitError, match="not a SQLite file or a postgresql:// URL") as info:
        MeasurementStore(url, lazy=True)
    assert "s3cret" not in str(info.value) and not any(tmp_path.iterdir())


def test_unwritable_folder_is_clear(tmp_path):
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro") as folder:
        with pytest.raises(LatkitError, match="cannot open the measurement store") as info:
            MeasurementStore(folder / "s.sqlite")
    assert "--db" in str(info.value)


def test_path_that_cannot_exist_is_clear(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LatkitError, match="--db"):
        MeasurementStore(blocker / "s.sqlite")


def test_read_only_filesystem_is_clear():
    # /proc refuses new files even to root, so this holds in CI as well
    with pytest.raises(LatkitError, match="cannot open the measurement store"):
        MeasurementStore("/proc/latkit/s.sqlite")


def test_a_network_keeps_the_origin_it_was_first_timed_with(store_location):
    """A network `validate` timed and a search later re-timed stays a validation network: its
    statistics are updated, its origin is not, so `fit` never learns from it."""
    ops = (OP, OP.replace(kernel=3))
    with MeasurementStore(store_location) as store:
        assert store.network_origin("dev", ops, ENV.env_id) is None
        store.add_network("dev", ops, stats(5.0), ENV, name="n", origin="validate")
        store.add_network("dev", ops, stats(4.0, exact=True), ENV, name="n", origin="search")
        assert store.network_origin("dev", ops, ENV.env_id) == "validate"
        assert store.network_stats("dev", ops, ENV.env_id) == stats(4.0, exact=True)
        frame = store.networks("dev")
        other = ENV.timed_with({"runs": 5})  # another environment is another timing
        store.add_network("dev", ops, stats(6.0), other, name="n", origin="search")
        assert store.network_origin("dev", ops, other.env_id) == "search"
        assert store.network_origin("dev", ops[:1], ENV.env_id) is None
        assert store.network_origin("elsewhere", ops, ENV.env_id) is None
    assert frame["origin"].tolist() == ["validate"] and frame["median_ms"].tolist() == [4.0]


def test_a_lazy_store_is_created_by_its_first_write_only(tmp_path):
    path = tmp_path / "new" / "s.sqlite"
    with MeasurementStore(path, lazy=True) as store:
        assert store.dataframe().empty and store.networks().empty and store.devices() == []
        assert store.device("dev") is None and store.measured_keys("dev") == set()
    assert not path.parent.exists()  # reading created neither the file nor its folder
    with MeasurementStore(path, lazy=True) as store:
        store.add("dev", OP, stats(1.0), ENV)
        assert path.exists() and store.measured_keys("dev") == {OP.key}
    with MeasurementStore(path, lazy=True) as store:  # an existing file opens as before
        assert len(store.dataframe("dev")) == 1


def test_a_lazy_store_sees_a_file_another_writer_created(tmp_path):
    path = tmp_path / "s.sqlite"
    with MeasurementStore(path, lazy=True) as reader:
        assert reader.dataframe().empty
        with MeasurementStore(path) as writer:
            writer.add("dev", OP, stats(1.0), ENV)
        assert reader.measured_keys("dev") == {OP.key}


def test_a_lazy_store_still_refuses_a_path_it_could_never_create(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LatkitError, match="cannot open the measurement store.*is a file"):
        MeasurementStore(blocker / "s.sqlite", lazy=True)
    with pytest.raises(LatkitError, match="cannot open the measurement store.*--db"):
        MeasurementStore("/proc/latkit/s.sqlite", lazy=True)
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro") as folder:
        with pytest.raises(LatkitError, match="cannot open the measurement store") as info:
            MeasurementStore(folder / "sub" / "s.sqlite", lazy=True)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ro"]
    assert list((tmp_path / "ro").iterdir()) == []


def test_create_makes_the_file_before_any_write(tmp_path):
    path = tmp_path / "s.sqlite"
    with MeasurementStore(path, lazy=True) as store:
        store.create()
        assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
