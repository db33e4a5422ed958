"""Helpers for the Android tests: a private adb server, device files for the emulated phone.

Not a test module: test_android_*.py and test_emulator.py import it and wrap it in fixtures.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "latkit" / "emulator" / "emulated_benchmark_model"
QUICK = {"warmup": 1, "runs": 3, "rounds": 2, "max_cv": 10.0, "max_retries": 0}


class WritingReporter:
    """A `latkit.reporting.Reporter` that writes notes to a text stream, one per line."""

    def __init__(self, out) -> None:
        self.out = out

    def task(self, description, total):
        return lambda amount=1.0: None

    def note(self, text, level="info") -> None:
        self.out.write(text + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AdbServer:
    """A private `adb` server: its own port and HOME, so nothing touches the user's adb."""

    port: int
    env: dict[str, str]
    home: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def adb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["adb", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


@contextmanager
def private_adb_server(home: Path) -> Iterator[AdbServer]:
    if shutil.which("adb") is None:
        pytest.skip("Debian's adb is not installed (apt-get install -y adb)")
    home.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # a free port can be taken by another process before adb binds it
        port = free_port()
        # HOME: adb makes its key in ~/.android; TMPDIR: it logs to $TMPDIR/adb.$UID.log
        env = dict(os.environ, HOME=str(home), TMPDIR=str(home), ANDROID_ADB_SERVER_PORT=str(port))
        server = AdbServer(port, env, home)
        started = server.adb("start-server")
        if started.returncode == 0:
            break
        server.adb("kill-server")
    assert started.returncode == 0, started.stderr
    try:
        yield server
    finally:
        server.adb("kill-server")


def phone_file(
    path: Path, port: int, *, name: str = "emu", timing: dict | None = None, **android
) -> Path:
    """A device file for the emulated phone on `port` (tcp transport unless overridden)."""
    settings = {
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": port,
        "remote_dir": "/data/local/tmp/latkit",
        "benchmark_model": str(STAND_IN),
        "cpu_affinity": "f0",
        "max_temperature_c": 45,
        "cooldown_s": 5,
        "batch_push": 4,
        "adb_key": str(path.parent / "no-such-adbkey"),
    }
    settings.update(android)
    data = {
        "name": name,
        "kind": "android",
        "runtime": "litert",
        "threads": 1,
        "timing": timing or QUICK,
        "android": settings,
    }
    path.write_text(yaml.safe_dump(data))
    return path
