"""The measurement store: one SQLite file, one transaction per measured op, resumable.

Rows are keyed by device name + op key + environment fingerprint, so re-running a profile skips
what is already there, and nothing is ever stored twice. Whole-network timings (for validation
and for fitting from networks) live in their own table with the same keying.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.ops import OP_FIELDS, OpSpec
from latkit.records import STAT_FIELDS, Environment, Stats, arch_id

SCHEMA_VERSION = 1
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY, kind TEXT, runtime TEXT, config_json TEXT, source TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    device TEXT NOT NULL, key TEXT NOT NULL, env_id TEXT NOT NULL,
    type TEXT, input_hw INTEGER, cin INTEGER, cout INTEGER, stride INTEGER, kernel INTEGER,
    expand REAL, groups INTEGER, se INTEGER, act TEXT, skip INTEGER, batch INTEGER,
    {", ".join(f"{s} REAL" for s in STAT_FIELDS)},
    runtime TEXT, runtime_version TEXT, threads INTEGER, host TEXT, device_model TEXT,
    temperature_c REAL, env_json TEXT, origin TEXT, measured_at REAL,
    PRIMARY KEY (device, key, env_id)
);
CREATE TABLE IF NOT EXISTS networks (
    device TEXT NOT NULL, arch_id TEXT NOT NULL, env_id TEXT NOT NULL, name TEXT,
    ops_json TEXT NOT NULL,
    {", ".join(f"{s} REAL" for s in STAT_FIELDS)},
    runtime TEXT, runtime_version TEXT, threads INTEGER, batch INTEGER, host TEXT,
    device_model TEXT, temperature_c REAL, env_json TEXT, origin TEXT, measured_at REAL,
    PRIMARY KEY (device, arch_id, env_id)
);
"""


class MeasurementStore:
    """SQLite-backed rows of measured ops and networks. Cheap to open; safe to kill at any time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self.transaction() as conn:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                elif row[0] != SCHEMA_VERSION:
                    raise LatkitError(
                        f"{self.path}: store schema version {row[0]}, this latkit reads "
                        f"{SCHEMA_VERSION}; use a new --db path"
                    )
        except (sqlite3.Error, OSError) as exc:
            raise LatkitError(
                f"{self.path}: cannot open the measurement store for writing ({exc}); "
                "choose a writable path with --db"
            ) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> MeasurementStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _write(self, sql: str, params: Any) -> None:
        try:
            with self.transaction() as conn:
                conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise LatkitError(f"{self.path}: cannot write the measurement store ({exc})") from None

    # --- devices --------------------------------------------------------------------------------

    def register_device(self, device: DeviceConfig | str) -> None:
        """Remember a device: its file (so later commands accept the name alone), or, for data
        imported from elsewhere, just its name."""
        if isinstance(device, str):
            name, kind, runtime, config, source = device, None, None, None, None
        else:
            name, kind, runtime = device.name, device.kind, device.runtime
            config, source = device.model_dump(mode="json"), device.source
        self._write(
            "INSERT INTO devices VALUES (?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
            "kind=COALESCE(excluded.kind, kind), runtime=COALESCE(excluded.runtime, runtime), "
            "config_json=COALESCE(excluded.config_json, config_json), "
            "source=COALESCE(excluded.source, source)",
            (name, kind, runtime, json.dumps(config) if config else None, source),
        )

    def device(self, name: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM devices WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["config"] = json.loads(out.pop("config_json")) if out["config_json"] else None
        return out

    def devices(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT name FROM devices ORDER BY name")]

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
        cols = ", ".join(row)
        self._write(
            f"INSERT OR REPLACE INTO measurements ({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )

    def measured_keys(self, device: str, env_id: str | None = None) -> set[str]:
        sql, params = "SELECT key FROM measurements WHERE device=?", [device]
        if env_id is not None:
            sql += " AND env_id=?"
            params.append(env_id)
        return {r[0] for r in self._conn.execute(sql, params)}

    def delete(self, device: str, env_id: str | None = None) -> int:
        sql, params = "DELETE FROM measurements WHERE device=?", [device]
        if env_id is not None:
            sql += " AND env_id=?"
            params.append(env_id)
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    def dataframe(self, device: str | None = None, env_id: str | None = None) -> pd.DataFrame:
        """All op rows (optionally of one device / environment) with the CSV's column names."""
        where, params = [], []
        if device is not None:
            where.append("device=?")
            params.append(device)
        if env_id is not None:
            where.append("env_id=?")
            params.append(env_id)
        sql = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(where) if where else "")
        frame = pd.read_sql_query(sql + " ORDER BY measured_at", self._conn, params=params)
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
        cols = ", ".join(row)
        self._write(
            f"INSERT OR REPLACE INTO networks ({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )

    def network_stats(self, device: str, ops: tuple[OpSpec, ...], env_id: str) -> Stats | None:
        row = self._conn.execute(
            f"SELECT {', '.join(STAT_FIELDS)} FROM networks WHERE device=? AND arch_id=? "
            "AND env_id=?",
            (device, arch_id(ops), env_id),
        ).fetchone()
        return Stats(**dict(row)) if row else None

    def networks(self, device: str | None = None) -> pd.DataFrame:
        sql, params = "SELECT * FROM networks", []
        if device is not None:
            sql += " WHERE device=?"
            params.append(device)
        return pd.read_sql_query(sql + " ORDER BY measured_at", self._conn, params=params)


def read_measurements(db: str | Path, device: str | None = None) -> pd.DataFrame:
    """The rows `latkit measurements --csv` writes, as a DataFrame: `read_measurements(db, dev)`."""
    with MeasurementStore(db) as store:
        return store.dataframe(device)
