"""End-to-end check of a predictor: random whole networks, timed on the device, vs F.

Per-op accuracy says little about what the search sees; this times whole networks with the
device's own profiler (so every device kind works) and compares them with `predict_network`.
Each network timing is committed to the store as soon as it is measured, so an interrupted
validation resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latkit import metrics
from latkit.predictors.predictor import LatencyPredictor
from latkit.predictors.report import scatter, write_csv
from latkit.profilers.base import Profiler
from latkit.profilers.session import time_network
from latkit.reporting import Reporter, SilentReporter
from latkit.spaces import Network, SearchSpace
from latkit.store import MeasurementStore


@dataclass(frozen=True)
class ValidationReport:
    n: int
    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    csv_path: Path
    png_path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            **self.metrics,
            "csv": str(self.csv_path),
            "png": str(self.png_path),
        }


def validate_device(
    profiler: Profiler,
    predictor: LatencyPredictor,
    space: SearchSpace,
    *,
    n: int = 50,
    seed: int = 0,
    store: MeasurementStore | None = None,
    out_dir: Path,
    reporter: Reporter | None = None,
    description: str = "timing networks",
) -> ValidationReport:
    """Time `n` seeded random architectures of `space` end to end and compare with F.

    Only networks F never saw are scored: one the store holds under another origin (a
    calibration or search network, which fed F's network terms) is passed over for the next
    draw. The report holds ±5%, ±10%, RMSPE, Spearman and the coverage of F's 90% interval.
    Progress is one task of `description` on `reporter`. Writes `validation.csv` and `validation.png`
    (predicted vs measured, y = x and the ±10% band) under `out_dir`.
    """
    advance = (reporter or SilentReporter()).task(description, n)
    rows = []
    for arch, network in unseen_networks(profiler, space, n, seed, store):
        ops = tuple(profiler.prepare(network.ops))
        stats = time_network(profiler, store, network, origin="validate")
        answer = predictor.network_answer(ops)
        rows.append(
            {
                "name": network.name,
                "arch": "-".join(map(str, arch)),
                "predicted_ms": answer.predicted_ms,
                "low_ms": answer.low_ms,
                "high_ms": answer.high_ms,
                "measured_ms": stats.median_ms,
            }
        )
        advance(1)
    measured = [r["measured_ms"] for r in rows]
    report = metrics.report([r["predicted_ms"] for r in rows], measured)
    report["coverage"] = metrics.coverage(
        [r["low_ms"] for r in rows], [r["high_ms"] for r in rows], measured
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "validation.csv", out_dir / "validation.png"
    write_csv(csv_path, rows)
    title = f"{profiler.device.name}: {space.name}, {len(rows)} networks"
    scatter(png_path, [r["predicted_ms"] for r in rows], measured, title, report)
    return ValidationReport(len(rows), report, rows, csv_path, png_path)


def unseen_networks(
    profiler: Profiler, space: SearchSpace, n: int, seed: int, store: MeasurementStore | None
) -> list[tuple[tuple[int, ...], Network]]:
    """The first `n` of the space's seeded random networks that the store does not hold under
    an origin other than `validate` (those fed F, so scoring F on them would flatter it)."""
    env_id = profiler.environment().env_id
    out = []
    for arch, network in space.sample_networks(3 * n + 20, seed):
        ops = tuple(profiler.prepare(network.ops))
        origin = None if store is None else store.network_origin(profiler.device.name, ops, env_id)
        if origin in (None, "validate"):
            out.append((arch, network))
        if len(out) == n:
            break
    return out
