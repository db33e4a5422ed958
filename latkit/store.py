"""The measurement store: one transaction per measured op, resumable, on SQLite or PostgreSQL.

Rows are keyed by device name + op key + environment fingerprint (which includes the timing
plan), so re-running a profile skips what is already there, and nothing is ever stored twice.
Whole-network timings (for validation and for fitting from networks) live in their own table with
the same keying.

Opened `lazy`, as every command opens it, a SQLite file is created on the first write rather than
on opening: a command that only reads, or that stops on a bad input before storing anything,
leaves no empty store behind.

`--db` is a file path (SQLite, the embedded default) or a `postgresql://user@host/db` URL, so
several profiling hosts can write into one server database and `fit` can read from it. Both hold
the same schema and keep the same guarantees: one transaction per op, and an upsert on the key, so
concurrent writers and reruns never duplicate a row.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pandas as pd

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.ops import OP_FIELDS, OpSpec
from latkit.records import FLAG_FIELDS, LOAD_FIELDS, STAT_FIELDS, Environment, Stats, arch_id

SCHEMA_VERSION = 4
URL_SCHEMES = ("postgresql://", "postgres://")

REAL = "DOUBLE PRECISION"  # 8-byte floats in both back ends (PostgreSQL's REAL has 4 bytes)
_OP_COLUMNS = [
    ("type", "TEXT"),
    ("input_hw", "INTEGER"),
    ("cin", "INTEGER"),
    ("cout", "INTEGER"),
    ("stride", "INTEGER"),
    ("kernel", "INTEGER"),
    ("expand", REAL),
    ("groups", "INTEGER"),
    ("se", "INTEGER"),
    ("act", "TEXT"),
    ("skip", "INTEGER"),
    ("batch", "INTEGER"),
]
_STAT_COLUMNS = [(name, REAL) for name in STAT_FIELDS[:8]] + [
    (name, "INTEGER") for name in STAT_FIELDS[8:]
]
_ENV_COLUMNS = [
    ("runtime", "TEXT"),
    ("runtime_version", "TEXT"),
    ("threads", "INTEGER"),
    ("host", "TEXT"),
    ("device_model", "TEXT"),
    ("temperature_c", REAL),
    ("env_json", "TEXT"),
    ("timing", "TEXT"),
    ("origin", "TEXT"),
    ("measured_at", REAL),
]
#: how busy the machine was (schema version 3): after the older columns, so they keep their order
_LOAD_COLUMNS = [(name, REAL) for name in LOAD_FIELDS]
#: op fields added since (schema version 4: the squeeze-excite style), after all of those
_OP_COLUMNS_V4 = [("se_style", "TEXT")]
TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "devices": (
        [
            ("name", "TEXT NOT NULL"),
            ("kind", "TEXT"),
            ("runtime", "TEXT"),
            ("config_json", "TEXT"),
            ("source", "TEXT"),
        ],
        ("name",),
    ),
    "measurements": (
        [("device", "TEXT NOT NULL"), ("key", "TEXT NOT NULL"), ("env_id", "TEXT NOT NULL")]
        + _OP_COLUMNS
        + _STAT_COLUMNS
        + _ENV_COLUMNS
        + _LOAD_COLUMNS
        + _OP_COLUMNS_V4,
        ("device", "key", "env_id"),
    ),
    "networks": (
        [
            ("device", "TEXT NOT NULL"),
            ("arch_id", "TEXT NOT NULL"),
            ("env_id", "TEXT NOT NULL"),
            ("name", "TEXT"),
            ("ops_json", "TEXT NOT NULL"),
            ("batch", "INTEGER"),
        ]
        + _STAT_COLUMNS
        + _ENV_COLUMNS
        + _LOAD_COLUMNS,
        ("device", "arch_id", "env_id"),
    ),
}
#: what version 1 stores lack; their rows say what they were timed from where that is known
_V1_EXACT = (
    "UPDATE {table} SET block = 1, exact = CASE WHEN runtime = 'imported' OR "
    "substr(runtime_version, 1, 15) = 'benchmark_model' THEN 0 ELSE 1 END"
)
#: what stores before version 4 lack: every op they hold had MobileNetV3's SE (or none)
_V3_SE_STYLE = "UPDATE measurements SET se_style = 'mbv3' WHERE se_style IS NULL"


#: `scheme://`: a URL, never a SQLite file's path (which would put its password on disk)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str | Path) -> bool:
    """Whether `--db` names a PostgreSQL database rather than a SQLite file (the scheme in any
    case); any other `scheme://` is refused (`check_location`)."""
    return str(location).lower().startswith(URL_SCHEMES)


def check_location(location: str) -> None:
    """Refuse a URL of another scheme than PostgreSQL's: taken for a path, it would create
    folders named after it, password and all."""
    if _SCHEME.match(location) and not is_url(location):
        raise LatkitError(
            f"--db {redact(location)}: not a SQLite file or a postgresql:// URL "
            f"(latkit stores in {' or '.join(URL_SCHEMES)} databases or SQLite files)"
        )


def redact(url: str) -> str:
    """The URL without its password (after the user name, or a `password=` parameter), for
    messages; a URL too malformed to parse keeps only its scheme, and a path is left as it is."""
    if not _SCHEME.match(url):
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return f"{url.split('://', 1)[0]}://***"
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username}:***@{netloc.rsplit('@', 1)[1]}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    shown = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    return shown + (f"#{parts.fragment}" if parts.fragment else "")


def _upsert(table: str, columns: Sequence[str], key: Sequence[str], update: str = "") -> str:
    """INSERT ... ON CONFLICT DO UPDATE, the upsert both back ends speak."""
    sets = update or ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
    )


class _Cursor(Protocol):
    description: Any
    rowcount: int

    def fetchall(self) -> list[Sequence[Any]]: ...

    def fetchone(self) -> Sequence[Any] | None: ...


class _Backend(Protocol):
    """What the store needs from a database: statements with `?` placeholders, transactions."""

    errors: tuple[type[BaseException], ...]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor: ...

    def transaction(self) -> Any: ...

    def has_table(self, name: str) -> bool: ...

    def lock_schema(self) -> None: ...

    def close(self) -> None: ...


class _SQLite:
    """A local file; WAL lets readers and several writer processes share it. A file this
    process may not write (a colleague's store, a read-only mount) opens as a snapshot to read:
    WAL needs a writable folder even for reading, and every write then fails in one line."""

    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if not path.exists() or _writable(path) and _writable(path.parent):
                raise
            self.conn.close()
            uri = path.resolve().as_uri() + "?immutable=1"
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        self.conn.execute("PRAGMA synchronous=FULL")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, tuple(params))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.conn.execute(sql, (name,)).fetchone() is not None

    def lock_schema(self) -> None:
        """BEGIN IMMEDIATE already holds the only write lock."""

    def close(self) -> None:
        self.conn.close()


class _Unwritten(_SQLite):
    """An empty store in memory, standing in for a SQLite file not created yet: reads see the
    schema and no rows, and the first write replaces it with the real file."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)


def _check_creatable(path: Path) -> None:
    """Refuse, creating nothing, a SQLite path whose file could not be created later: a file
    where a folder must be, or a folder that takes no new files (probed with a nameless
    temporary file, which also catches read-only and pseudo file systems)."""
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        raise OSError(f"{existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OSError(f"cannot create files in {existing}: {exc.strerror or exc}") from None


class _Postgres:
    """A server database through psycopg 3: one connection, autocommit outside transactions."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise LatkitError(
                f"--db {redact(url)}: PostgreSQL stores need the psycopg package; "
                "install it with pip install 'latkit[postgres]'"
            ) from None
        self.psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), tuple(params))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def has_table(self, name: str) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        return row is not None and row[0] is not None

    def lock_schema(self) -> None:
        """Serialise schema creation between hosts starting at once (held until commit)."""
        self.conn.execute("SELECT pg_advisory_xact_lock(7204185)")

    def close(self) -> None:
        self.conn.close()


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _scrubbed(text: str, location: str) -> str:
    """`text` (a driver's message) with the store's URL and its password masked: libpq quotes
    a URL it cannot parse whole."""
    if not is_url(location):
        return text
    text = text.replace(location, redact(location))
    try:
        password = urlsplit(location).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


class MeasurementStore:
    """Rows of measured ops and networks in SQLite (a path) or PostgreSQL (a URL). Cheap to open;
    safe to kill at any time."""

    def __init__(self, path: str | Path, *, lazy: bool = False) -> None:
        """Open the store at `path`; `lazy`: a SQLite file that does not exist yet is created on
        the first write, not now (until then reads see an empty store)."""
        self.location = str(path)
        check_location(self.location)
        if is_url(self.location):  # libpq takes the scheme in lower case only
            scheme, rest = self.location.split("://", 1)
            self.location = f"{scheme.lower()}://{rest}"
        #: what messages call the store: the file, or the URL without its password
        self.path: Path | str = redact(self.location) if is_url(path) else Path(path)
        #: a SQLite file that does not exist yet: an empty stand-in until the first write
        self._unwritten = lazy and not is_url(path) and not Path(path).exists()
        self._db: _Backend = self._connect(stand_in=self._unwritten)

    def _connect(self, stand_in: bool) -> _Backend:
        """The database (or, with `stand_in`, the in-memory stand-in for a file still to be
        created), its schema made current; any failure is one line naming the store."""
        try:
            if stand_in:
                _check_creatable(Path(self.location))
                db: _Backend = _Unwritten()
            elif is_url(self.location):
                db = _Postgres(self.location)
            else:
                db = _SQLite(Path(self.location))
        except LatkitError:
            raise
        except Exception as exc:  # sqlite3/psycopg/OS errors: one line naming the store
            raise LatkitError(
                f"{self.path}: cannot open the measurement store ({_scrubbed(_one_line(exc), self.location)}); "
                "choose a writable path or a reachable database with --db"
            ) from None
        try:
            self._ensure_schema(db)
        except LatkitError:
            db.close()
            raise
        except (*db.errors, OSError) as exc:
            db.close()
            raise LatkitError(
                f"{self.path}: cannot open the measurement store for writing ({_scrubbed(_one_line(exc), self.location)}); "
                "choose a writable path with --db"
            ) from None
        return db

    def create(self) -> None:
        """Create the SQLite file now rather than on the first write: before several processes
        start writing into one new store at once."""
        if self._unwritten:
            stand_in, self._db = self._db, self._connect(stand_in=False)
            self._unwritten = False
            stand_in.close()

    def _live(self, writing: bool) -> _Backend:
        """The backend to use now: the real file once it is written to, or once another process
        has created it (so its rows are seen)."""
        if self._unwritten and (writing or Path(self.location).exists()):
            self.create()
        return self._db

    @property
    def is_file(self) -> bool:
        """Whether the store is a local SQLite file (its folder can hold raw tool output)."""
        return isinstance(self.path, Path)

    @staticmethod
    def _version(db: _Backend) -> int | None:
        if not db.has_table("schema_version"):
            return None
        row = db.execute("SELECT version FROM schema_version").fetchone()
        return None if row is None else int(row[0])

    def _ensure_schema(self, db: _Backend) -> None:
        """Create the tables, or bring an older store up to date by adding the columns it lacks
        (version 1: the statistics' provenance; version 2: the machine's load, unknown for
        old rows; version 3: the SE style, `mbv3` for old rows); a store that is already
        current is only read, so a read-only store opens for reading."""
        if self._version(db) == SCHEMA_VERSION:
            return
        with db.transaction():
            db.lock_schema()
            version = self._version(db)
            if version is not None and version > SCHEMA_VERSION:
                raise LatkitError(
                    f"{self.path}: store schema version {version}, this latkit reads "
                    f"{SCHEMA_VERSION}; use a new --db path or upgrade latkit"
                )
            if version == SCHEMA_VERSION:
                return
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            for table, (columns, key) in TABLES.items():
                body = ", ".join(f"{name} {kind}" for name, kind in columns)
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} ({body}, PRIMARY KEY ({', '.join(key)}))"
                )
                present = {d[0] for d in db.execute(f"SELECT * FROM {table} LIMIT 0").description}
                for name, kind in columns:
                    if name not in present:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                if version == 1 and table != "devices":
                    db.execute(_V1_EXACT.format(table=table))
                if version is not None and version < 4 and table == "measurements":
                    db.execute(_V3_SE_STYLE)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MeasurementStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[Sequence]]:
        """(column names, rows) of a read; a database failure is one line naming the store."""
        db = self._live(writing=False)
        try:
            cursor = db.execute(sql, params)
            return [d[0] for d in cursor.description], cursor.fetchall()
        except db.errors as exc:
            raise LatkitError(
                f"{self.path}: cannot read the measurement store ({_scrubbed(_one_line(exc), self.location)})"
            ) from None

    def _frame(self, table: str, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """A read of `table` as a DataFrame: floating columns as floats (NULL = NaN), 0/1 flags
        as booleans (unknown stays missing)."""
        columns, rows = self._query(sql, params)
        frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns)
        for name, kind in TABLES[table][0]:
            if kind == REAL and name in frame:
                frame[name] = frame[name].astype(float)
        for name in FLAG_FIELDS:
            if name in frame:
                frame[name] = frame[name].astype("Int64").astype("boolean")
        return frame

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the rows it touched."""
        db = self._live(writing=True)
        try:
            with db.transaction():
                return db.execute(sql, params).rowcount
        except db.errors as exc:
            raise LatkitError(
                f"{self.path}: cannot write the measurement store ({_scrubbed(_one_line(exc), self.location)})"
            ) from None

    # --- devices --------------------------------------------------------------------------------

    def register_device(self, device: DeviceConfig | str) -> None:
        """Remember a device: its file (so later commands accept the name alone), or, for data
        imported from elsewhere, just its name."""
        if isinstance(device, str):
            name, kind, runtime, config, source = device, None, None, None, None
        else:
            name, kind, runtime = device.name, device.kind, device.runtime
            config, source = device.model_dump(mode="json"), device.source
        columns = ("name", "kind", "runtime", "config_json", "source")
        keep = ", ".join(f"{c} = COALESCE(excluded.{c}, devices.{c})" for c in columns[1:])
        self._write(
            _upsert("devices", columns, ("name",), keep),
            (name, kind, runtime, json.dumps(config) if config else None, source),
        )

    def device(self, name: str) -> dict[str, Any] | None:
        columns, rows = self._query("SELECT * FROM devices WHERE name = ?", (name,))
        if not rows:
            return None
        out = dict(zip(columns, rows[0]))
        out["config"] = json.loads(out.pop("config_json")) if out["config_json"] else None
        return out

    def devices(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM devices ORDER BY name")[1]]

    # --- ops ------------------------------------------------------------------------------------

    def add(
        self,
        device: str,
        op: OpSpec,
        stats: Stats,
        env: Environment,
        temperature_c: float | None = None,
        origin: str = "measured",
    ) -> None:
        """Insert or replace one op's row in its own transaction (the unit of resumability)."""
        row = {
            "device": device,
            "key": op.key,
            **op.to_dict(),
            **stats.columns(),
            **env.columns(),
            "temperature_c": temperature_c,
            "origin": origin,
            "measured_at": time.time(),
        }
        row["batch"] = op.batch
        row["se"], row["skip"] = int(op.se), int(op.skip)
        key = TABLES["measurements"][1]
        self._write(_upsert("measurements", list(row), key), list(row.values()))

    def measured_keys(self, device: str, env_id: str | None = None) -> set[str]:
        sql, params = "SELECT key FROM measurements WHERE device = ?", [device]
        if env_id is not None:
            sql += " AND env_id = ?"
            params.append(env_id)
        return {r[0] for r in self._query(sql, params)[1]}

    def delete(self, device: str, env_id: str | None = None) -> int:
        sql, params = "DELETE FROM measurements WHERE device = ?", [device]
        if env_id is not None:
            sql += " AND env_id = ?"
            params.append(env_id)
        return self._write(sql, params)

    def dataframe(self, device: str | None = None, env_id: str | None = None) -> pd.DataFrame:
        """All op rows (optionally of one device / environment) with the CSV's column names."""
        where, params = [], []
        if device is not None:
            where.append("device = ?")
            params.append(device)
        if env_id is not None:
            where.append("env_id = ?")
            params.append(env_id)
        sql = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(where) if where else "")
        frame = self._frame("measurements", sql + " ORDER BY measured_at", params)
        for col in ("se", "skip"):
            frame[col] = frame[col].astype(bool)
        front = ["key", *OP_FIELDS, *STAT_FIELDS]
        return frame[front + [c for c in frame.columns if c not in front]]

    # --- whole networks -------------------------------------------------------------------------

    def add_network(
        self,
        device: str,
        ops: tuple[OpSpec, ...],
        stats: Stats,
        env: Environment,
        name: str = "",
        temperature_c: float | None = None,
        origin: str = "measured",
    ) -> None:
        """Insert a network's timing, or update the statistics of one already stored. Its
        `origin` stays what it was first timed for: a network `validate` judged F on and a
        search later re-timed must stay out of `fit`, whatever timed it last."""
        row = {
            "device": device,
            "arch_id": arch_id(ops),
            "name": name,
            "ops_json": json.dumps([op.key for op in ops]),
            **stats.columns(),
            **env.columns(),
            "temperature_c": temperature_c,
            "origin": origin,
            "measured_at": time.time(),
        }
        key = TABLES["networks"][1]
        kept = (*key, "origin")
        update = ", ".join(f"{c} = excluded.{c}" for c in row if c not in kept)
        self._write(_upsert("networks", list(row), key, update), list(row.values()))

    def network_origin(self, device: str, ops: tuple[OpSpec, ...], env_id: str) -> str | None:
        """What the stored timing of these ops was first taken for (`validate`, `calibrate`,
        `search`, ...), or None when the store holds none in this environment."""
        _, rows = self._query(
            "SELECT origin FROM networks WHERE device = ? AND arch_id = ? AND env_id = ?",
            (device, arch_id(ops), env_id),
        )
        return rows[0][0] if rows else None

    def network_stats(self, device: str, ops: tuple[OpSpec, ...], env_id: str) -> Stats | None:
        columns, rows = self._query(
            f"SELECT {', '.join((*STAT_FIELDS, *LOAD_FIELDS))} FROM networks "
            "WHERE device = ? AND arch_id = ? AND env_id = ?",
            (device, arch_id(ops), env_id),
        )
        return Stats.from_row(dict(zip(columns, rows[0]))) if rows else None

    def networks(self, device: str | None = None) -> pd.DataFrame:
        sql, params = "SELECT * FROM networks", []
        if device is not None:
            sql += " WHERE device = ?"
            params.append(device)
        return self._frame("networks", sql + " ORDER BY measured_at", params)


def read_measurements(db: str | Path, device: str | None = None) -> pd.DataFrame:
    """The rows `latkit measurements --csv` writes, as a DataFrame: `read_measurements(db, dev)`."""
    with MeasurementStore(db, lazy=True) as store:
        return store.dataframe(device)
