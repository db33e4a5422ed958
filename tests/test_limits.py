"""Every number a user can give has a sane range, checked before anything is built, timed or
stored: in a device file (one line naming the file, the field and the limit) and on the command
line (a usage error naming the option).

The device-file cases run the real entry point in a child process, as a user would: a value that
once allocated terabytes (`batch_size`) or timed for days (`timing.runs`) must now stop at once,
with no store created.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from latkit.cli import app
from latkit.devices import DeviceConfig, load_device
from latkit.errors import DeviceFileError
from tests.conftest import ROOT

BASE = {"name": "x", "kind": "cpu", "runtime": "onnxruntime"}
PHONE = {"name": "p", "kind": "android", "runtime": "litert", "android": {}}


def _numeric_fields(model: type, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted name, FieldInfo) of every int or float field of the device schema, nested too."""
    out = []
    for name, field in model.model_fields.items():
        if name == "source":
            continue
        section = next(
            (
                t
                for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                if isinstance(t, type) and hasattr(t, "model_fields")
            ),
            None,
        )
        if section is not None:
            out += _numeric_fields(section, f"{prefix}{name}.")
        elif field.annotation in (int, float):
            out.append((prefix + name, field))
    return out


NUMERIC = _numeric_fields(DeviceConfig)


def test_the_schema_has_numbers_to_check():
    names = {name for name, _ in NUMERIC}
    assert {"batch_size", "threads", "timing.runs", "android.cooldown_s"} <= names


@pytest.mark.parametrize(("name", "field"), NUMERIC, ids=[n for n, _ in NUMERIC])
def test_every_number_in_a_device_file_has_both_bounds(name, field):
    kinds = {type(m).__name__ for m in field.metadata}
    assert kinds & {"Ge", "Gt"} and kinds & {"Le", "Lt"}, f"{name} is unbounded: {kinds}"


def _nested(dotted: str, value: object) -> dict:
    """`{"timing": {"runs": value}}` from `"timing.runs"`."""
    head, _, rest = dotted.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


CASES = [
    ("batch_size", 10**12, "1 to 4096"),
    ("batch_size", 0, "1 to 4096"),
    ("threads", 5000, "1 to 1024"),
    ("timing.runs", 10**9, "1 to 100000"),
    ("timing.warmup", -1, "0 to 10000"),
    ("timing.rounds", 1000, "1 to 100"),
    ("timing.max_cv", 0, "above 0 and at most 10"),
    ("timing.max_cv", float("nan"), "above 0 and at most 10"),
    ("timing.max_retries", 50, "0 to 20"),
    ("timing.min_block_ms", float("inf"), "0 to 1000"),
    ("android.cooldown_s", 10**6, "0 to 3600"),
    ("android.max_temperature_c", 500, "20 to 100"),
    ("android.batch_push", 0, "1 to 1000"),
]


@pytest.mark.parametrize(("field", "value", "limit"), CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_an_out_of_range_number_is_one_line_naming_file_field_and_limit(
    tmp_path, field, value, limit
):
    base = PHONE if field.startswith("android.") else BASE
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(_merge(base, _nested(field, value))))
    with pytest.raises(DeviceFileError) as info:
        load_device(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field {field!r}") and "\n" not in message
    assert f"allowed: {limit}" in message


def test_a_timing_plan_too_long_in_total_is_refused(tmp_path):
    path = tmp_path / "dev.yaml"
    timing = {"runs": 100_000, "rounds": 100, "max_retries": 20}
    path.write_text(yaml.safe_dump({**BASE, "timing": timing}))
    with pytest.raises(DeviceFileError, match=r"field 'timing': runs x rounds .* at most 1000000"):
        load_device(path)


def test_the_shipped_device_files_are_inside_the_limits():
    for path in sorted((ROOT / "device_configs").glob("*.yaml")):
        assert isinstance(load_device(path), DeviceConfig)


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", 1_000_000_000_000), ("timing", {"runs": 1_000_000_000})],
    ids=["batch_size-1e12", "runs-1e9"],
)
def test_the_reported_failures_stop_at_once_and_store_nothing(tmp_path, field, value):
    """These once gave a traceback (a huge allocation) and a silent hang."""
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump({**BASE, field: value}))
    db = tmp_path / "store" / "s.sqlite"
    proc = subprocess.run(
        [sys.executable, "-m", "latkit", "profile", "--device", str(path), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=300,  # a safety net for the old hang, not a measurement
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and field in lines[0] and "allowed" in lines[0]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.yaml"]  # no store, no folder


MINE = {
    "profile",
    "measurements",
    "spaces",
    "time-network",
    "export",
    "fit",
    "predict",
    "validate",
    "import-lut",
    "export-lut",
    "import-measurements",
}


def _numeric_options() -> list[tuple[str, object]]:
    group = typer.main.get_command(app)
    return [
        (name, param)
        for name, command in group.commands.items()
        if name in MINE
        for param in command.params
        if param.type_descriptor.annotation in (int, float)
    ]


@pytest.mark.parametrize(
    ("command", "param"),
    _numeric_options(),
    ids=[f"{c} {p.opts[0]}" for c, p in _numeric_options()],
)
def test_every_numeric_option_has_both_bounds(command, param):
    assert param.min is not None and param.max is not None, f"{command} {param.opts[0]}"


BAD_OPTIONS = [
    ("--limit", ["profile", "-d", "x.yaml", "--limit", "0"]),
    ("--limit", ["profile", "-d", "x.yaml", "--limit", "1000000"]),
    ("--batch", ["export", "--out", "o", "--batch", "5000"]),
    ("--seed", ["fit", "-d", "x", "--seed", "-1"]),
    ("--seed", ["fit", "-d", "x", "--seed", str(2**32)]),
    ("--test-fraction", ["fit", "-d", "x", "--test-fraction", "0.95"]),
    ("--train", ["fit", "-d", "x", "--networks", "n.jsonl", "--train", "1"]),
    ("--train", ["fit", "-d", "x", "--networks", "n.jsonl", "--train", "1000000"]),
    ("--resolution", ["predict", "-d", "x", "--arch", "a", "--resolution", "5000"]),
    ("--networks", ["validate", "-d", "x", "--networks", "0"]),
    ("--networks", ["validate", "-d", "x", "--networks", "1000000"]),
    ("--seed", ["validate", "-d", "x", "--seed", "-5"]),
]


@pytest.mark.parametrize(("option", "args"), BAD_OPTIONS, ids=[" ".join(a) for _, a in BAD_OPTIONS])
def test_an_out_of_range_option_is_a_usage_error_before_any_work(
    tmp_path, monkeypatch, option, args
):
    monkeypatch.chdir(tmp_path)
    db = ["--db", str(tmp_path / "s.sqlite")] if args[0] != "export" else []
    result = CliRunner().invoke(app, [*args, *db])
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert list(tmp_path.iterdir()) == []  # nothing created, not even the store
