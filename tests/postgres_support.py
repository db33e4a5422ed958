"""A real PostgreSQL server for the store's tests and bench/fleet.py: initdb + pg_ctl on a loopback
port, in a temporary folder, removed afterwards.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user that
Debian's package creates. Not a test module: conftest.py wraps it in fixtures.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "PostgreSQL is not installed (apt-get install -y postgresql)"


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    port: int
    root: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self, prefix: str = "latkit") -> str:
        """A new, empty database on the server; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def execute(self, url: str, *statements: str) -> None:
        """Run statements as the superuser on the database at `url`."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throw-away server (fsync off: the tests are about transactions, not disks)."""
    bindir = server_binaries()
    if bindir is None:
        raise FileNotFoundError(INSTALL_HINT)
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="latkit-pg-"))
    root.chmod(0o755)
    if user:
        shutil.chown(root, user=user)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(bindir / args[0]), *args[1:]],
            user=user,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )

    data = root / "data"
    made = run(
        "initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
    )
    if made.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {made.stderr.strip()}")
    started = None
    for _attempt in range(3):  # a free port can be taken before the server binds it
        port = _free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = run(
            "pg_ctl", "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"
        )
        if started.returncode == 0:
            break
    if started is None or started.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(
            f"pg_ctl start failed: {started.stderr.strip() if started else ''} {log}"
        )
    try:
        yield PostgresServer(port, root)
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
