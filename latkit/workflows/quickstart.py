"""The whole job on this machine's CPU, end to end: profile, fit F, validate it, search, time.

Every stage reuses what the store already holds, so running it again after an interruption
continues instead of starting over.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latkit.devices import DeviceConfig, Timing, load_device
from latkit.predictors import LatencyPredictor, fit_device
from latkit.profilers import ProfilerOptions, get_profiler
from latkit.profilers.session import CALIBRATION_NETWORKS, ProfileSummary
from latkit.reporting import Level, Reporter, SilentReporter
from latkit.search.latency import LatencyTable
from latkit.search.trainer import EpochRecord, SearchConfig
from latkit.spaces import load_space
from latkit.store import MeasurementStore
from latkit.workflows.defaults import EPOCHS, QUICKSTART_FINAL_EPOCHS, SPACE, WARMUP_EPOCHS
from latkit.workflows.profile import profile_steps
from latkit.workflows.search import SearchResult, run_search, torch_threads
from latkit.workflows.validate import ValidationReport, validate_device

DEFAULT_DEVICE_FILE = Path(__file__).resolve().parents[2] / "device_configs" / "local-cpu.yaml"
#: where between the fastest and the slowest predicted architecture the target lies
TARGET_FRACTION = 0.4


def default_device() -> DeviceConfig:
    """`device_configs/local-cpu.yaml` of this checkout, or the same settings built in."""
    if DEFAULT_DEVICE_FILE.exists():
        return load_device(DEFAULT_DEVICE_FILE)
    return DeviceConfig(
        name="local-cpu",
        kind="cpu",
        runtime="onnxruntime",
        batch_size=1,
        threads=1,
        timing=Timing(warmup=10, runs=50, rounds=3, max_cv=0.05),
    )


@dataclass(frozen=True)
class QuickstartResult:
    device: str
    profile: ProfileSummary
    predictor_path: Path
    validation: ValidationReport
    target_ms: float
    search: SearchResult
    wall_s: float

    @property
    def measured_over_target(self) -> float | None:
        """Measured / T of the found network (None when nothing was measured)."""
        measured = self.search.measured_ms
        return None if measured is None else measured / self.target_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "ops_profiled": self.profile.ops,
            "profile": {
                key: self.profile.to_json()[key]
                for key in ("rows", "unstable", "busy", "median_busy_cores", "median_cv")
            },
            "target_ms": self.target_ms,
            "measured_over_target": self.measured_over_target,
            "validation": self.validation.to_json(),
            "search": self.search.to_json(),
            "wall_s": self.wall_s,
        }


def profile_health(
    summary: ProfileSummary, config: DeviceConfig, space: str, db: str | Path
) -> str:
    """The profile step's last word: how many rows are unstable and how to re-measure them
    (e.g. "3 of 40 rows unstable (2 timed while the machine was busy): latkit profile ...")."""
    text = f"1/5 profiled: {summary.health()}"
    if not summary.unstable:
        return text
    device = config.source or config.name
    command = ["latkit", "profile", "--device", device, "--space", space, "--db", str(db)]
    return f"{text}: {shlex.join([*command, '--only-unstable'])} re-measures them"


def _level(summary: ProfileSummary) -> Level:
    return "warning" if summary.unstable else "info"


def quickstart(
    *,
    db: str | Path,
    data_dir: Path = Path("data"),
    networks: int = 20,
    epochs: int = EPOCHS,
    warmup_epochs: int = WARMUP_EPOCHS,
    final_epochs: int = QUICKSTART_FINAL_EPOCHS,
    train_threads: int = 1,
    reporter: Reporter | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> QuickstartResult:
    """Profile `proxyless-tiny` on the default CPU device (its ops, then calibration networks),
    fit F, validate F on `networks` whole networks, search on digits with a hard budget at a
    target between the fastest and the slowest architecture, and time what the search found
    (the closed loop of `run_search`)."""
    started = time.perf_counter()
    reporter = reporter or SilentReporter()
    config = default_device()
    space = load_space(SPACE)
    with MeasurementStore(db) as store:
        profiler = get_profiler(config, ProfilerOptions(reporter=reporter))
        try:
            summary = profile_steps(
                profiler,
                space,
                store,
                ops_title=f"1/5 profiling {space.name} on {config.name}",
                calibration_title=f"2/5 calibrating F on {CALIBRATION_NETWORKS} whole networks",
                on_ops=lambda done: reporter.note(
                    profile_health(done, config, space.name, db), _level(done)
                ),
            )
            report = fit_device(store, config.name, data_dir=data_dir)
            predictor: LatencyPredictor = report.predictor
            path = report.path
            validation = validate_device(
                profiler,
                predictor,
                space,
                n=networks,
                seed=0,
                store=store,
                out_dir=Path(data_dir) / config.name / "validation",
                reporter=reporter,
                description=f"3/5 validating F on {networks} networks",
            )
        finally:
            profiler.close()
        table = LatencyTable.from_predictor(predictor, space, batch=config.batch_size)
        _, fastest = table.fastest()
        _, slowest = table.slowest()
        target = round(fastest + TARGET_FRACTION * (slowest - fastest), 4)
        reporter.note(
            f"4/5 searching on digits at T = {target:g} ms "
            f"(architectures span {fastest:.4f} .. {slowest:.4f} ms predicted)"
        )
        with torch_threads(train_threads):
            result = run_search(
                config,
                SearchConfig(target_ms=target, epochs=epochs, warmup_epochs=warmup_epochs),
                space=space,
                hard_budget=True,
                final_epochs=final_epochs,
                data_dir=data_dir,
                store=store,
                predictor=predictor,
                reporter=reporter,
                on_epoch=on_epoch,
            )
    return QuickstartResult(
        device=config.name,
        profile=summary,
        predictor_path=path,
        validation=validation,
        target_ms=target,
        search=result,
        wall_s=time.perf_counter() - started,
    )
