"""A wrong device file gets one line naming the file and the field, through the real CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from latkit.cli import app
from latkit.devices import DeviceConfig, load_device
from latkit.errors import DeviceFileError
from tests.conftest import ROOT

GOOD = "name: x\nkind: cpu\nruntime: onnxruntime\n"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "device_configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_device_files_load(path):
    assert isinstance(load_device(path), DeviceConfig)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nkind: toaster\nruntime: onnxruntime\n",
            "field 'kind': 'toaster' is not allowed",
        ),
        (
            "name: x\nkind: cpu\nruntime: tensorrt\n",
            "runtime 'tensorrt' is not allowed for kind cpu",
        ),
        ("kind: cpu\nruntime: onnxruntime\n", "field 'name' is missing"),
        (GOOD + "threads: many\n", "field 'threads'"),
        (GOOD + "timing: {runs: 0}\n", "field 'timing.runs': 0 is out of range (allowed: 1 to"),
        (GOOD + "batch_size: 1000000000000\n", "field 'batch_size': 1000000000000 is out of range"),
        (GOOD + "threads: .nan\n", "field 'threads'"),
        (GOOD + "timing: {max_cv: .inf}\n", "field 'timing.max_cv': inf is not a finite number"),
        (GOOD + "colour: red\n", "field 'colour' is not part of the schema"),
        ("name: x\nkind: cpu\n  runtime: [\n", "bad YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: p\nkind: android\nruntime: litert\n", "needs an `android:` section"),
        (
            "name: p\nkind: android\nruntime: litert\nandroid: {remote_dir: /system/bin}\n",
            "remote_dir '/system/bin' must be inside",
        ),
        (
            "name: p\nkind: android\nruntime: litert\nandroid: {remote_dir: /data/local/tmp/../../x}\n",
            "must be inside",
        ),
        ("name: p\nkind: android\nruntime: litert\nandroid: {transport: tcp}\n", "needs host"),
    ],
)
def test_bad_device_file_is_one_clear_line(tmp_path, text, expected):
    path = tmp_path / "dev.yaml"
    path.write_text(text)
    with pytest.raises(DeviceFileError) as info:
        load_device(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message
    result = CliRunner().invoke(
        app, ["profile", "--device", str(path), "--db", str(tmp_path / "store" / "s.sqlite")]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, DeviceFileError)
    assert not (tmp_path / "store").exists()  # checked before the store is created


def test_missing_file(tmp_path):
    with pytest.raises(DeviceFileError, match="device file not found"):
        load_device(tmp_path / "nope.yaml")


def test_cli_prints_one_line_without_traceback(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "dev.yaml"
    path.write_text("name: x\nkind: toaster\nruntime: onnxruntime\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from latkit.cli import main; main()",
            "profile",
            "--device",
            str(path),
            "--db",
            str(tmp_path / "s.sqlite"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "kind" in lines[0]
    assert not (tmp_path / "s.sqlite").exists()  # the README: nothing stored before the error
