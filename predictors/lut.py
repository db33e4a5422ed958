"""Latency tables measured elsewhere: ProxylessNAS / once-for-all YAML LUTs and plain CSV.

Imported rows go into the measurement store like measured ones, under one shared environment per
device (`runtime: imported`), so several files of the same device (e.g. once-for-all's 17
resolutions) form one table that `latkit fit` uses together. Each row records its source file.

What an imported row holds, since a LUT only has count, mean and var or std:
median_ms = mean_ms = the LUT mean, std_ms = sqrt(var) or std, runs = count, cv = std / mean;
min, max, p10 and p90 are unknown (NaN). A CSV row has no spread: std NaN, cv 0, runs 0 unless
the optional statistics columns give them.

Both formats read back what latkit writes: `latkit export-lut` writes a LUT, and the CSV of
`latkit measurements --csv` imports as it is (its `median_ms` is the latency, its other statistics
are kept, and its environment columns are accepted and left out: the rows become imported data).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from latkit.devices import DeviceConfig, device_name
from latkit.errors import LatkitError
from latkit.files import read_yaml, write_atomic
from latkit.ops import DIALECTS, OP_FIELDS, OpSpec, detect_dialect, from_key, to_key
from latkit.predictors.fit import latest_env_rows, ops_of
from latkit.records import Environment, Stats
from latkit.store import TABLES, MeasurementStore

SPREAD = {"proxylessnas": "var", "ofa": "std"}
CSV_REQUIRED = ("type", "input_hw", "cin", "cout")
#: the latency column, or its name in `latkit measurements --csv` (the first one present counts)
CSV_LATENCY = ("latency_ms", "median_ms")
CSV_OPTIONAL = ("mean_ms", "std_ms", "min_ms", "max_ms", "p10_ms", "p90_ms", "cv", "runs")
#: statistics flags and counts kept when given (as `latkit measurements --csv` writes them)
CSV_FLAGS = ("exact", "unstable")
CSV_COUNTS = ("block", "attempts")
#: the rest of what `latkit measurements --csv` writes: accepted, not imported
CSV_EXPORTED = ("key", *(name for name, _ in TABLES["measurements"][0]))
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
        if not (math.isfinite(mean) and mean > 0):
            raise LatkitError(f"{where}: mean must be a positive number, got {mean}")
        if std < 0 or math.isinf(std) or count < 0:  # NaN std: unknown, as in a bare mean
            raise LatkitError(f"{where}: var, std and count must be at least 0 and finite")
        entries.append(LutEntry(str(key), op, count, mean, std))
    return dialect, entries


def import_lut(
    store: MeasurementStore, path: str | Path, device: DeviceConfig | str
) -> tuple[str, int]:
    """Store every entry of a LUT as a row of `device` (a name, or a device file's config);
    returns (dialect, rows). The whole file is read and checked before the device is registered
    or a row stored, so a bad file leaves the store as it was."""
    path = Path(path)
    dialect, entries = read_lut(path)
    store.register_device(device)
    device = device_name(device)
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


def _csv_stats(row: dict[str, str], latency_column: str) -> Stats:
    """A CSV row's statistics: its latency as median (and mean, unless given), every other
    statistic it gives, the rest unknown. A given value must be a finite number, at least 0."""
    given = {c: _number(row, c) for c in (latency_column, *CSV_OPTIONAL)}
    latency = given.pop(latency_column)
    if latency is None or not math.isfinite(latency) or latency <= 0:
        got = row.get(latency_column)
        raise LatkitError(f"{latency_column} must be a positive number, got {got!r}")
    for column, value in given.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise LatkitError(f"{column} must be a finite number, at least 0, got {row[column]!r}")
    runs = given.pop("runs")
    if runs is not None and not runs.is_integer():
        raise LatkitError(f"runs must be a whole number, got {row['runs']!r}")
    values = {c: UNKNOWN if v is None else v for c, v in given.items()}
    mean = latency if given["mean_ms"] is None else values["mean_ms"]
    std = values["std_ms"]
    cv = given["cv"]
    if cv is None:
        cv = std / mean if math.isfinite(std) else 0.0
    spread = (values[c] for c in ("min_ms", "max_ms", "p10_ms", "p90_ms"))
    stats = Stats(latency, mean, std, *spread, cv, 0 if runs is None else int(runs))
    return dataclasses.replace(stats, **_flags(row))


def _flags(row: dict[str, str]) -> dict[str, bool | int]:
    """The flags and counts a row gives (`True`/`False`, whole numbers from 1); absent or
    empty ones keep their defaults."""
    out: dict[str, bool | int] = {}
    for column in CSV_FLAGS:
        text = (row.get(column) or "").strip().lower()
        if text:
            if text not in ("true", "false", "1", "0"):
                raise LatkitError(f"{column} must be True or False, got {row[column]!r}")
            out[column] = text in ("true", "1")
    for column in CSV_COUNTS:
        value = _number(row, column)
        if value is not None:
            if not (math.isfinite(value) and value.is_integer() and value >= 1):
                raise LatkitError(f"{column} must be a whole number from 1, got {row[column]!r}")
            out[column] = int(value)
    return out


def _csv_row(row: dict[str, str], latency_column: str) -> tuple[OpSpec, Stats]:
    fields = {k: v for k, v in row.items() if k in OP_FIELDS and v not in ("", None)}
    if "expand" in fields:
        fields["expand"] = _number(row, "expand")
    return OpSpec.from_dict(fields), _csv_stats(row, latency_column)


def _check_header(path: Path, header: list[str]) -> str:
    """The latency column of a CSV whose header is complete and holds nothing unknown."""
    latency = next((c for c in CSV_LATENCY if c in header), None)
    missing = [c for c in CSV_REQUIRED if c not in header]
    missing += [] if latency else [" or ".join(CSV_LATENCY)]
    known = (*OP_FIELDS, *CSV_LATENCY, *CSV_OPTIONAL, *CSV_FLAGS, *CSV_COUNTS, *CSV_EXPORTED)
    unknown = [c for c in header if c not in known]
    problems = [f"missing column(s) {', '.join(missing)}"] if missing else []
    problems += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
    if problems:
        raise LatkitError(
            f"{path}:1: {'; '.join(problems)}; columns are the op spec fields "
            f"({', '.join(OP_FIELDS)}) plus latency_ms or median_ms "
            f"(optional: {', '.join(CSV_OPTIONAL)})"
        )
    return latency


def read_measurements_csv(path: str | Path) -> list[tuple[OpSpec, Stats]]:
    """Every row of a CSV of latencies, checked: one bad row is an error with its line number.
    Reads the CSV `latkit measurements --csv` writes as well as a hand-made one."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise LatkitError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            latency = _check_header(path, reader.fieldnames or [])
            rows = []
            for row in reader:
                try:
                    rows.append(_csv_row(row, latency))
                except LatkitError as exc:
                    raise LatkitError(f"{path}:{reader.line_num}: {exc}") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise LatkitError(f"{path}: not a CSV file ({exc})") from None
    if not rows:
        raise LatkitError(f"{path}: no data rows")
    return rows


def import_measurements(
    store: MeasurementStore, path: str | Path, device: DeviceConfig | str
) -> int:
    """Store a CSV of latencies measured elsewhere (op spec columns + `latency_ms`, or the CSV of
    `latkit measurements --csv`) under `device` (a name, or a device file's config).

    Every row is checked before the device is registered or any row stored, so a bad row
    (reported with its line number) leaves the store as it was.
    """
    path = Path(path)
    rows = read_measurements_csv(path)
    store.register_device(device)
    for op, stats in rows:
        env = imported_environment(op.batch, path.name, "csv")
        store.add(device_name(device), op, stats, env, origin=f"imported:{path.name}")
    return len(rows)
