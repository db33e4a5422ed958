"""Profile several devices at once into one store: what `latkit profile --device a --device b` runs.

One worker process per device runs `profile_space` with its own store connection, so a phone
that is unplugged, a board that hangs up or a worker that is killed stops alone: its progress line
says why, the other devices finish, and every op each one finished is already committed. Running
the same command again resumes every device where it stopped (the store's keying makes reruns and
concurrent writers safe). Workers report progress and notes through a queue; this process turns
them into one progress line per device on the caller's `Reporter`.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latkit.devices import DeviceConfig
from latkit.errors import LatkitError
from latkit.profilers.android import EMULATED_LABEL
from latkit.profilers.session import ProfileSummary
from latkit.reporting import Advance, Level, Reporter, SilentReporter
from latkit.spaces import SearchSpace
from latkit.store import MeasurementStore
from latkit.workflows.profile import check_options, profile_space

#: seconds a worker gets to finish its transaction after Ctrl-C before it is terminated
STOP_GRACE_S = 10.0
#: kinds whose profiler times this host's own CPU or GPU
LOCAL_KINDS = ("cpu", "gpu")


@dataclass(frozen=True)
class DeviceOutcome:
    """How one device's profile ended: its summary, or the one line that says why it stopped."""

    device: str
    summary: ProfileSummary | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = self.summary.to_json() if self.summary else {"device": self.device}
        return {**data, "error": self.error}


@dataclass(frozen=True)
class FleetResult:
    outcomes: list[DeviceOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[DeviceOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    def to_json(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s, "devices": [o.to_json() for o in self.outcomes]}


class QueueReporter:
    """A `Reporter` in a worker process: forwards tasks, progress and notes to the parent."""

    def __init__(self, events: Any, device: str) -> None:
        self.events = events
        self.device = device
        self._ids = itertools.count()

    def task(self, description: str, total: float | None) -> Advance:
        task = next(self._ids)
        self.events.put(("task", self.device, task, description, total))
        return lambda amount=1.0: self.events.put(("advance", self.device, task, amount))

    def note(self, text: str, level: Level = "info") -> None:
        self.events.put(("note", self.device, text, level))


def _work(
    config: DeviceConfig,
    space: SearchSpace,
    db: str,
    settings: dict[str, Any],
    events: Any,
) -> None:
    """A worker process: profile one device, then report how it ended."""
    reporter = QueueReporter(events, config.name)
    try:
        with MeasurementStore(db) as store:
            summary = profile_space(config, space, store, reporter=reporter, **settings)
        events.put(("done", config.name, summary))
    except LatkitError as exc:
        events.put(("failed", config.name, str(exc)))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's and the parent's Ctrl-C
        events.put(("failed", config.name, "interrupted; finished ops are stored"))
    except Exception as exc:  # a bug: keep its traceback on stderr, stop this device alone
        traceback.print_exc()
        events.put(("failed", config.name, f"{type(exc).__name__}: {exc}"))


def check_fleet(configs: Sequence[DeviceConfig], keep_files: bool = False) -> list[str]:
    """Refuse a fleet that cannot run; return warnings about one that runs but may mislead."""
    names: dict[str, str] = {}
    for config in configs:
        source = config.source or config.name
        if config.name in names:
            raise LatkitError(
                f"{names[config.name]} and {source} both name device {config.name!r}: "
                "each device of a fleet needs its own name"
            )
        names[config.name] = source
        check_options(config, keep_files)
    local = [c.name for c in configs if c.kind in LOCAL_KINDS]
    if len(local) > 1:
        return [
            f"devices {', '.join(local)} all run on this host: profiled at once they slow each "
            "other down, so their numbers are not what each gets alone"
        ]
    return []


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"its worker process was killed ({name}); finished ops are stored"
    return f"its worker process exited with status {code} without a result"


def profile_fleet(
    configs: Sequence[DeviceConfig],
    space: SearchSpace,
    db: str | Path,
    *,
    limit: int | None = None,
    fresh: bool = False,
    keep_files: bool = False,
    raw_dir: Path = Path("data/raw"),
    reporter: Reporter | None = None,
) -> FleetResult:
    """Profile every device of `configs` concurrently, one worker process each, into `db`
    (a SQLite path or a PostgreSQL URL). Never raises for one device's failure: its outcome
    carries the reason, and the other devices finish."""
    reporter = reporter or SilentReporter()
    for warning in check_fleet(configs, keep_files):
        reporter.note(warning, "warning")
    started = time.perf_counter()
    settings = {"limit": limit, "fresh": fresh, "keep_files": keep_files, "raw_dir": raw_dir}
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe with runtime thread pools
    events = ctx.Queue()
    workers = {
        c.name: ctx.Process(
            target=_work, args=(c, space, str(db), settings, events), name=f"latkit-{c.name}"
        )
        for c in configs
    }
    for worker in workers.values():
        worker.start()
    ended: dict[str, DeviceOutcome] = {}
    tasks: dict[tuple[str, int], Advance] = {}

    def handle(event: tuple) -> None:
        kind, device, *rest = event
        if kind == "task":
            task, description, total = rest
            tasks[device, task] = reporter.task(description, total)
        elif kind == "advance":
            task, amount = rest
            tasks[device, task](amount)
        elif kind == "note":
            text, level = rest
            reporter.note(f"{device}: {text}", level)
        elif kind == "done":
            ended[device] = DeviceOutcome(device, summary=rest[0])
        else:
            ended[device] = DeviceOutcome(device, error=rest[0])
            reporter.note(f"{device} stopped: {rest[0]}", "warning")

    def drain(wait_s: float) -> None:
        try:
            handle(events.get(timeout=wait_s))
            while True:
                handle(events.get_nowait())
        except queue.Empty:
            pass

    interrupted = True
    try:
        while len(ended) < len(workers):
            drain(0.2)
            for name, worker in workers.items():
                if name not in ended and not worker.is_alive():
                    drain(0.5)  # its last words may still be in the pipe
                    if name not in ended:
                        handle(("failed", name, _exit_reason(worker.exitcode)))
        interrupted = False
    finally:
        _stop(list(workers.values()), interrupted)
    outcomes = [ended[c.name] for c in configs]
    emulated = [o.device for o in outcomes if o.summary and o.summary.label == EMULATED_LABEL]
    if len(emulated) > 1:
        reporter.note(
            f"{', '.join(emulated)} are emulated phones: their host-CPU numbers were taken at "
            "once on this host's cores, so each slowed the others down",
            "warning",
        )
    return FleetResult(outcomes, time.perf_counter() - started)


def _stop(workers: list[Any], interrupted: bool) -> None:
    """Make sure no worker outlives the fleet. After an interruption, workers still running get
    Ctrl-C first and time to commit or roll back the op in flight."""
    if interrupted:
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        worker.join(max(0.1, deadline - time.monotonic()))
        if worker.is_alive():
            worker.terminate()
            worker.join(5)
