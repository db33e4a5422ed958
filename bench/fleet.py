"""A fleet of three emulated phones: concurrent vs one after another, and a phone cut mid-run.

    python bench/fleet.py [--space proxyless-tiny] [--limit N] [--no-postgres]

Starts three `latkit emulate-phone` processes (each its own process, as three phones are three
machines), then prints

- the wall time of `latkit profile --device a --device b --device c` (one worker process per
  phone, one store) against three `latkit profile --device X` run one after another, and their
  ratio, with the device files' retries and again with none (retries depend on how noisy the
  runs were, so only the second compares the same work);
- a cut: the fleet profile again into a fresh store, phone b's process killed (the cable pulled)
  once b has committed some rows; the command must stop b alone, finish a and c, and a rerun
  after b is back must resume only what is missing. Rows lost (committed before the cut but
  gone or re-measured after the rerun, or never measured) and rows duplicated must both be 0;
- the same cut with a PostgreSQL store (a throw-away server started with initdb + pg_ctl, as the
  tests do), unless --no-postgres.

The emulated phones run benchmark_model as LiteRT on this host: all their numbers are host-CPU
numbers, and three of them share this machine's cores, so the concurrency ratio says how well the
fleet overlaps ADB round trips and bookkeeping, not what three real phones would give. The load
average is printed before and after: other jobs on the machine change every figure here.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from latkit.profilers.base import host_model
from latkit.spaces import load_space
from latkit.store import MeasurementStore

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "latkit" / "emulator" / "emulated_benchmark_model"
TIMING = yaml.safe_load((ROOT / "device_configs" / "emulated-phone.yaml").read_text())["timing"]
NAMES = ("a", "b", "c")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Phone:
    """`latkit emulate-phone` in its own process."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name, self.folder, self.port = name, folder, free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> Phone:
        log = open(self.folder / f"phone-{self.name}.log", "a")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from latkit.cli import main; main()", "emulate-phone"]
            + ["--port", str(self.port), "--root", str(self.folder / f"phone-{self.name}")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"emulated phone {self.name} did not start")

    def cut(self) -> None:
        """Pull the cable: kill the phone's process outright."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def device_file(self, retries: int | None = None) -> Path:
        path = self.folder / f"{self.name}.yaml"
        timing = TIMING if retries is None else {**TIMING, "max_retries": retries}
        android = {
            "transport": "tcp",
            "host": "127.0.0.1",
            "port": self.port,
            "benchmark_model": str(STAND_IN),
            "adb_key": str(self.folder / "no-adbkey"),
        }
        data = {"name": self.name, "kind": "android", "runtime": "litert", "timing": timing}
        path.write_text(yaml.safe_dump({**data, "android": android}))
        return path


def profile(files: list[Path], space: str, limit: int, db: str) -> subprocess.Popen:
    args = ["profile", "--space", space, "--limit", str(limit), "--db", db]
    args += [a for f in files for a in ("--device", str(f))]
    return subprocess.Popen(
        [sys.executable, "-c", "from latkit.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(db: str) -> list[tuple[str, str, str, float]]:
    with MeasurementStore(db) as store:
        frame = store.dataframe()
    return list(zip(frame["device"], frame["key"], frame["env_id"], frame["measured_at"]))


def timed(files: list[Path], space: str, limit: int, db: str) -> float:
    started = time.perf_counter()
    process = profile(files, space, limit, db)
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"latkit profile failed:\n{out}\n{err}")
    return time.perf_counter() - started


def work(db: str) -> str:
    """How much timing the rows took: retries add rounds, and contention causes retries."""
    with MeasurementStore(db) as store:
        frame = store.dataframe()
    return (
        f"{int(frame['attempts'].sum())} attempts for {len(frame)} ops, "
        f"{int(frame['unstable'].sum())} unstable"
    )


def compare(phones: list[Phone], space: str, limit: int, folder: Path, retries: int | None) -> None:
    """Three phones one after another, then concurrently, each into a fresh store."""
    tag = "device files' retries" if retries is None else f"max_retries {retries}"
    files = [p.device_file(retries) for p in phones]
    serial_db, fleet_db = str(folder / f"serial-{tag}.sqlite"), str(folder / f"fleet-{tag}.sqlite")
    serial = sum(timed([f], space, limit, serial_db) for f in files)
    together = timed(files, space, limit, fleet_db)
    print(
        f"[{tag}] three phones one after another: {serial:.1f} s ({work(serial_db)}); "
        f"concurrently: {together:.1f} s ({work(fleet_db)}); concurrent / one after another = "
        f"{together / serial:.2f} ({load()})"
    )


def cut_run(phones: list[Phone], space: str, limit: int, db: str, label: str) -> None:
    """The fleet profile with phone b cut mid-run, then rerun; prints lost and duplicated rows."""
    files = [p.device_file() for p in phones]
    process = profile(files, space, limit, db)
    victim = phones[1]
    while process.poll() is None:
        try:
            done = sum(1 for device, *_ in rows(db) if device == victim.name)
        except Exception:  # noqa: BLE001 - the store may not exist yet
            done = 0
        if done >= max(1, limit // 4):
            victim.cut()
            break
        time.sleep(0.2)
    out, err = process.communicate()
    before = {(d, k, e): t for d, k, e, t in rows(db)}
    stopped = [line for line in err.splitlines() if line.strip()]
    print(
        f"[{label}] cut phone b after {sum(d == 'b' for d, _, _ in before)} of {limit} rows: "
        f"exit status {process.returncode}; stderr: {stopped[-1] if stopped else '(none)'}"
    )
    victim.start()
    files = [p.device_file() for p in phones]  # b is back, on a new port
    rerun = profile(files, space, limit, db)
    out, err = rerun.communicate()
    after = rows(db)
    keyed = {(d, k, e): t for d, k, e, t in after}
    duplicated = len(after) - len(keyed)
    lost = sum(1 for key, t in before.items() if keyed.get(key) != t)
    expected = {(n, op.key) for n in NAMES for op in load_space(space).distinct_ops()[:limit]}
    missing = len(expected - {(d, k) for d, k, _ in keyed})
    print(
        f"[{label}] rerun exit status {rerun.returncode}: {len(keyed)} rows for "
        f"{len(expected)} expected; rows lost {lost + missing} (committed before the cut and "
        f"changed or gone: {lost}; never measured: {missing}), rows duplicated {duplicated}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="proxyless-tiny")
    parser.add_argument("--limit", type=int, default=0, help="Ops per phone (0: all).")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    limit = args.limit or len(load_space(args.space).distinct_ops())
    print(f"host: {host_model()}, {os.cpu_count()} CPUs; {load()}")
    print(f"space {args.space}, {limit} ops per phone, timing {TIMING}; host-CPU numbers")
    with tempfile.TemporaryDirectory(prefix="latkit-fleet-") as tmp:
        folder = Path(tmp)
        phones = [Phone(name, folder).start() for name in NAMES]
        try:
            compare(phones, args.space, limit, folder, None)
            compare(phones, args.space, limit, folder, 0)
            cut_run(phones, args.space, limit, str(folder / "cut.sqlite"), "SQLite")
            if not args.no_postgres:
                sys.path.insert(0, str(ROOT / "tests"))
                from postgres_support import postgres_server

                with postgres_server() as server:
                    url = server.database("fleet")
                    together = timed(files_of(phones), args.space, limit, url)
                    print(
                        f"[PostgreSQL] three phones concurrently: {together:.1f} s ({work(url)}; "
                        f"{load()})"
                    )
                    cut_run(phones, args.space, limit, server.database("cut"), "PostgreSQL")
        finally:
            for phone in phones:
                if phone.process and phone.process.poll() is None:
                    phone.cut()
    print(f"end: {load()}")


def files_of(phones: list[Phone]) -> list[Path]:
    return [p.device_file() for p in phones]


if __name__ == "__main__":
    main()
