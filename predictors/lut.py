"""Latency tables measured elsewhere: ProxylessNAS / once-for-all YAML LUTs and plain CSV.

Imported rows go into the measurement store like measured ones, under one shared environment per
device (`runtime: imported`), so several files of the same device (e.g. once-for-all's 17
resolutions) form one table that `latkit fit` uses together. Each row records its source file.

What an imported row holds, since a LUT only has count, mean and var or std:
median_ms = mean_ms = the LUT mean, std_ms = sqrt(var) or std, runs = count, cv = std / mean;
min, max, p10 and p90 are unknown (NaN). A CSV row has no spread: std NaN, cv 0, runs 0 unless
the optional `std_ms` / `runs` columns give them.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from latkit.errors import LatkitError
from latkit.files import read_yaml, write_atomic
from latkit.ops import DIALECTS, OP_FIELDS, OpSpec, detect_dialect, from_key, to_key
from latkit.predictors.fit import latest_env_rows, ops_of
from latkit.records import Environment, Stats
from latkit.store import MeasurementStore

SPREAD = {"proxylessnas": "var", "ofa": "std"}
CSV_REQUIRED = ("type", "input_hw", "cin", "cout", "latency_ms")
CSV_OPTIONAL = ("std_ms", "runs")
UNKNOWN = float("nan")


@dataclass(frozen=True)
class LutEntry:
    key: str
    op: OpSpec
    count: int
    mean: float
    std: float


def imported_environment(batch: int, source: str, fmt: str) -> Environment:
    """The one environment all imported rows of a device share (the file is recorded, not keyed)."""
    return Environment(
        runtime="imported",
        runtime_version="",
        threads=0,
        batch=batch,
        host="",
        info={"source": source, "format": fmt},
    )


def imported_stats(mean: float, std: float, count: int) -> Stats:
    cv = std / mean if mean > 0 and math.isfinite(std) else 0.0
    return Stats(mean, mean, std, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, cv, count)


def read_lut(path: str | Path) -> tuple[str, list[LutEntry]]:
    """(dialect, entries) of a YAML LUT; the dialect is detected once for the whole file."""
    path = Path(path)
    data = read_yaml(path, "LUT")
    if not isinstance(data, dict) or not data:
        raise LatkitError(f"{path}: a LUT is a YAML mapping of op keys to count/mean/var|std")
    dialect = "ofa" if any(detect_dialect(str(k)) == "ofa" for k in data) else "proxylessnas"
    entries = []
    for key, value in data.items():
        where = f"{path}: key {key!r}"
        if not isinstance(value, dict) or "mean" not in value:
            raise LatkitError(f"{where}: needs a mapping with `mean` (and `count`, `var` or `std`)")
        try:
            op = from_key(str(key), dialect)
            mean = float(value["mean"])
            if "std" in value:
                std = float(value["std"])
            elif "var" in value:
                std = math.sqrt(float(value["var"]))
            else:
                std = UNKNOWN
            count = int(value.get("count", 0))
        except LatkitError as exc:
            raise LatkitError(f"{path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise LatkitError(f"{where}: bad number ({exc})") from None
        if not mean > 0:
            raise LatkitError(f"{where}: mean must be positive, got {mean}")
        entries.append(LutEntry(str(key), op, count, mean, std))
    return dialect, entries


def import_lut(store: MeasurementStore, path: str | Path, device: str) -> tuple[str, int]:
    """Store every entry of a LUT as a row of `device`; returns (dialect, rows)."""
    path = Path(path)
    dialect, entries = read_lut(path)
    store.register_device(device)
    for entry in entries:
        env = imported_environment(entry.op.batch, path.name, f"lut-{dialect}")
        stats = imported_stats(entry.mean, entry.std, entry.count)
        store.add(device, entry.op, stats, env, origin=f"imported:{path.name}")
    return dialect, len(entries)


def export_lut(store: MeasurementStore, device: str, fmt: str, out: str | Path) -> int:
    """Write the device's latest-environment rows as a LUT in `fmt`'s key dialect and spread."""
    if fmt not in DIALECTS:
        raise LatkitError(f"--format {fmt!r} is not one of {', '.join(DIALECTS)}")
    frame = store.dataframe(device)
    if frame.empty:
        raise LatkitError(f"no measurements for device {device!r} in {store.path} to export")
    rows = latest_env_rows(frame)
    rows = rows[rows["type"] != "zero"]
    table = {}
    for op, row in zip(ops_of(rows), rows.itertuples()):
        std = float(row.std_ms)
        spread = std**2 if SPREAD[fmt] == "var" else std
        table[to_key(op, fmt)] = {
            "count": int(row.runs) if math.isfinite(row.runs) else 0,
            "mean": float(row.mean_ms),
            SPREAD[fmt]: spread,
        }
    write_atomic(out, yaml.safe_dump(table, sort_keys=True, default_flow_style=False))
    return len(table)


def _number(row: dict[str, str], column: str) -> float | None:
    text = row.get(column)
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise LatkitError(f"column {column}: {text!r} is not a number") from None


def _csv_row(row: dict[str, str]) -> tuple[OpSpec, float, float, int]:
    fields = {k: v for k, v in row.items() if k in OP_FIELDS and v not in ("", None)}
    if "expand" in fields:
        fields["expand"] = _number(row, "expand")
    op = OpSpec.from_dict(fields)
    latency, std, runs = (_number(row, c) for c in ("latency_ms", *CSV_OPTIONAL))
    if latency is None or not math.isfinite(latency) or latency <= 0:
        raise LatkitError(f"latency_ms must be a positive number, got {row['latency_ms']!r}")
    return op, latency, UNKNOWN if std is None else std, 0 if runs is None else int(runs)


def import_measurements(store: MeasurementStore, path: str | Path, device: str) -> int:
    """Store a CSV of latencies measured elsewhere (op spec columns + `latency_ms`).

    Every row is checked before any is stored, so a bad row (reported with its line number)
    leaves the store as it was.
    """
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise LatkitError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in CSV_REQUIRED if c not in header]
        unknown = [c for c in header if c not in (*OP_FIELDS, "latency_ms", *CSV_OPTIONAL)]
        if missing or unknown:
            problem = (f"missing column(s) {', '.join(missing)}" if missing else "") + (
                f"{'; ' if missing else ''}unknown column(s) {', '.join(unknown)}"
                if unknown
                else ""
            )
            raise LatkitError(
                f"{path}:1: {problem}; columns are the op spec fields "
                f"({', '.join(OP_FIELDS)}) plus latency_ms (optional: {', '.join(CSV_OPTIONAL)})"
            )
        rows = []
        for row in reader:
            try:
                rows.append(_csv_row(row))
            except LatkitError as exc:
                raise LatkitError(f"{path}:{reader.line_num}: {exc}") from None
    if not rows:
        raise LatkitError(f"{path}: no data rows")
    store.register_device(device)
    for op, latency, std, runs in rows:
        env = imported_environment(op.batch, path.name, "csv")
        store.add(
            device, op, imported_stats(latency, std, runs), env, origin=f"imported:{path.name}"
        )
    return len(rows)
