"""Profiling a fleet: several emulated phones at once into one store (SQLite and PostgreSQL), one
worker process each; a phone cut mid-run or a worker killed stops alone, and a rerun resumes only
what is missing, losing and duplicating nothing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from android_support import phone_file

from latkit.devices import load_device
from latkit.emulator import EmulatedPhone, Faults
from latkit.errors import LatkitError
from latkit.profilers.android.profiler import EMULATED_LABEL
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from latkit.workflows.fleet import check_fleet, profile_fleet
from tests.conftest import write_device

SPACE = load_space("proxyless-tiny")
LIMIT = 8
KEYS = sorted(op.key for op in SPACE.distinct_ops()[:LIMIT])
#: enough rounds that a cut lands mid-run
TIMING = {"warmup": 1, "runs": 3, "rounds": 2, "max_cv": 10.0, "max_retries": 0}


class Recorder:
    """A Reporter that keeps what it was told: one task per device, notes."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.notes: list[str] = []
        self.done: dict[str, float] = {}

    def task(self, description, total):
        self.tasks.append(description)
        self.done[description] = 0.0

        def advance(amount=1.0):
            self.done[description] += amount

        return advance

    def note(self, text, level="info"):
        self.notes.append(text)


def rows(location: str) -> dict[str, dict[str, float]]:
    """device -> key -> measured_at, failing on any duplicate."""
    with MeasurementStore(location) as store:
        frame = store.dataframe()
    assert not frame.duplicated(["device", "key", "env_id"]).any()
    out: dict[str, dict[str, float]] = {}
    for row in frame.itertuples():
        out.setdefault(row.device, {})[row.key] = row.measured_at
    return out


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from latkit.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_phone_cut_mid_run_stops_alone_and_a_rerun_resumes_it(tmp_path, store_location):
    # the middle phone drops its connection at its 46th service: in its second batch of 4 ops
    # (a batch takes about 20 services, the first commits at about 40), so it has rows to keep
    faults = [Faults(), Faults(drop_after=45), Faults()]
    phones = [EmulatedPhone(faults=f).start() for f in faults]
    try:
        files = [
            phone_file(tmp_path / f"p{i}.yaml", p.port, name=f"phone{i}", timing=TIMING)
            for i, p in enumerate(phones)
        ]
        args = ["profile", "--space", SPACE.name, "--limit", str(LIMIT), "--db", store_location]
        args += [a for f in files for a in ("--device", str(f))]
        first = cli(*args)
        assert first.returncode == 2, first.stdout + first.stderr
        errors = [line for line in first.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and "1 of 3 devices stopped early (phone1)" in errors[0]
        assert "Traceback" not in first.stdout + first.stderr
        assert "phone1 stopped:" in first.stdout and "connection" in first.stdout
        assert EMULATED_LABEL in first.stdout  # these are host-CPU numbers, and say so
        kept = rows(store_location)
        assert sorted(kept["phone0"]) == sorted(kept["phone2"]) == KEYS  # the others finished
        assert 0 < len(kept.get("phone1", {})) < LIMIT  # cut mid-run, finished ops kept

        second = cli(*args)
        assert second.returncode == 0, second.stdout + second.stderr
        after = rows(store_location)
        assert all(sorted(after[f"phone{i}"]) == KEYS for i in range(3))
        for device, keys in kept.items():  # nothing finished was measured again
            assert all(after[device][k] == t for k, t in keys.items())
        assert f"resuming: {len(kept['phone1'])} of {LIMIT} ops already stored" in second.stdout
        assert "phone0, phone1, phone2 are emulated phones" in " ".join(second.stdout.split())
    finally:
        for phone in phones:
            phone.stop()


def _kill_when_started(name: str, location: str, stop: threading.Event) -> None:
    """Kill the worker process of device `name` once it has committed a row."""
    while not stop.is_set():
        try:
            started = name in rows(location)
        except LatkitError:
            started = False
        worker = [p for p in multiprocessing.active_children() if p.name == f"latkit-{name}"]
        if started and worker:
            os.kill(worker[0].pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def test_a_killed_worker_stops_its_device_alone(tmp_path):
    db = str(tmp_path / "fleet.sqlite")
    MeasurementStore(db).close()
    slow = {**TIMING, "runs": 20, "rounds": 3}
    with EmulatedPhone() as a, EmulatedPhone() as b:
        configs = [
            load_device(phone_file(tmp_path / "a.yaml", a.port, name="a", timing=TIMING)),
            load_device(phone_file(tmp_path / "b.yaml", b.port, name="b", timing=slow)),
        ]
        stop = threading.Event()
        killer = threading.Thread(target=_kill_when_started, args=("b", db, stop), daemon=True)
        killer.start()
        reporter = Recorder()
        try:
            result = profile_fleet(configs, SPACE, db, limit=LIMIT, reporter=reporter)
        finally:
            stop.set()
            killer.join(5)
    a_out, b_out = result.outcomes
    assert a_out.error is None and a_out.summary.measured == LIMIT
    assert b_out.summary is None and "killed (SIGKILL)" in b_out.error
    assert any(n.startswith("b stopped: its worker process was killed") for n in reporter.notes)
    # one progress line per device, each labelled as host-CPU numbers
    assert sorted(reporter.tasks) == [
        f"profiling a ({EMULATED_LABEL})",
        f"profiling b ({EMULATED_LABEL})",
    ]
    assert reporter.done[f"profiling a ({EMULATED_LABEL})"] == pytest.approx(LIMIT)
    stored = rows(db)
    assert sorted(stored["a"]) == KEYS and 0 < len(stored["b"]) < LIMIT


def test_fleets_that_cannot_run_are_refused_before_anything_starts(tmp_path):
    one = load_device(write_device(tmp_path / "one.yaml", name="same"))
    two = load_device(write_device(tmp_path / "two.yaml", name="same"))
    with pytest.raises(LatkitError, match="both name device 'same'"):
        check_fleet([one, two])
    other = load_device(write_device(tmp_path / "other.yaml", name="other"))
    with pytest.raises(LatkitError, match="--keep applies to Android devices only"):
        check_fleet([one, other], keep_files=True)
    (warning,) = check_fleet([one, other])
    assert "same, other all run on this host" in warning


def test_devices_shows_which_device_files_reach_which_phone(tmp_path):
    from android_support import free_port
    from typer.testing import CliRunner

    from latkit.cli import app

    with EmulatedPhone() as phone:
        files = tmp_path / "configs"
        files.mkdir()
        phone_file(files / "mine.yaml", phone.port, name="mine")
        phone_file(files / "elsewhere.yaml", free_port(), name="elsewhere")
        write_device(files / "cpu.yaml")  # not a phone: not listed
        address = f"127.0.0.1:{phone.port}"
        result = CliRunner().invoke(
            app,
            ["devices", "--no-usb", "--adb-server", f"127.0.0.1:{free_port()}", "--tcp", address]
            + ["--device-files", str(files)],
            env={"COLUMNS": "200"},
        )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if address in line)
    assert "mine.yaml" in row and "elsewhere.yaml" not in row and "host-CPU numbers" in row
    unmatched = result.output.split("reach none of these phones:")[1]
    assert "elsewhere.yaml (tcp 127.0.0.1:" in unmatched and "mine.yaml" not in unmatched
    assert "cpu.yaml" not in result.output


def test_device_file_matching_by_transport_and_serial():
    from latkit.devices import AndroidSettings
    from latkit.workflows.discovery import PhoneRow, reaches

    usb = PhoneRow("2A24", "usb", "device", "Pixel 7")
    held = PhoneRow("2A24", "adb-server (usb)", "device", "Pixel 7")
    wifi = PhoneRow("10.0.0.5:5555", "tcp", "device", "Pixel 7")
    assert reaches(AndroidSettings(transport="usb"), usb)  # no serial: any USB phone
    assert reaches(AndroidSettings(transport="usb"), held)
    assert not reaches(AndroidSettings(transport="usb"), wifi)
    assert not reaches(AndroidSettings(transport="usb", serial="OTHER"), usb)
    assert reaches(AndroidSettings(transport="adb-server", serial="2A24"), held)
    assert reaches(AndroidSettings(transport="tcp", host="10.0.0.5", port=5555), wifi)
    assert not reaches(AndroidSettings(transport="tcp", host="10.0.0.5", port=5556), wifi)
