"""End-to-end check of a predictor: random whole networks, timed on the device, vs F.

Per-op accuracy says little about what the search sees; this times whole networks with the
device's own profiler (so every device kind works) and compares them with `predict_network`.
Each network timing is committed to the store as soon as it is measured, so an interrupted
validation resumes where it stopped.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latkit import metrics
from latkit.spaces import SearchSpace
from latkit.store import MeasurementStore
from predictors.predictor import LatencyPredictor
from profilers.base import Profiler


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
    on_progress: Callable[[float], None] | None = None,
) -> ValidationReport:
    """Time `n` seeded random architectures of `space` end to end and compare with F.

    `on_progress(1)` is called after each network. Writes `validation.csv` and `validation.png`
    (predicted vs measured, y = x and the ±10% band) under `out_dir`.
    """
    device = profiler.device.name
    env = profiler.environment()
    if store is not None:
        from profilers.session import register

        register(store, profiler.device)
    rows = []
    for arch, network in space.sample_networks(n, seed):
        ops = tuple(profiler.prepare(network.ops))
        stats = store.network_stats(device, ops, env.env_id) if store is not None else None
        if stats is None:
            measured = profiler.measure_network(network)
            stats = measured.stats
            if store is not None:
                store.add_network(
                    device,
                    ops,
                    stats,
                    env,
                    name=network.name,
                    temperature_c=measured.temperature_c,
                    origin="validate",
                )
        rows.append(
            {
                "name": network.name,
                "arch": "-".join(map(str, arch)),
                "predicted_ms": predictor.predict_network(ops),
                "measured_ms": stats.median_ms,
            }
        )
        if on_progress:
            on_progress(1)
    predicted = [r["predicted_ms"] for r in rows]
    measured = [r["measured_ms"] for r in rows]
    report = metrics.report(predicted, measured)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "validation.csv", out_dir / "validation.png"
    write_csv(csv_path, rows)
    scatter(png_path, predicted, measured, f"{device}: {space.name}, {len(rows)} networks", report)
    return ValidationReport(len(rows), report, rows, csv_path, png_path)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "error_pct"])
        writer.writeheader()
        for row in rows:
            error = 100 * (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
            writer.writerow({**row, "error_pct": round(error, 3)})
    tmp.replace(path)


def scatter(
    path: Path,
    predicted: list[float],
    measured: list[float],
    title: str,
    report: dict[str, float],
) -> None:
    """Predicted vs measured with y = x and the ±10% band. Renders with the Agg canvas directly,
    so no global matplotlib backend is switched and no display is needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lo = 0.9 * min(min(predicted), min(measured))
    hi = 1.1 * max(max(predicted), max(measured))
    line = np.linspace(lo, hi, 2)
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="tab:green", alpha=0.15, label="±10%")
    ax.plot(line, line, color="tab:green", lw=1, label="y = x")
    ax.scatter(measured, predicted, s=14, color="tab:blue", label="networks")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured (ms)", ylabel="predicted (ms)")
    ax.set_title(
        f"{title}\n±10%: {report['acc10']:.0%}  ±5%: {report['acc5']:.0%}  "
        f"RMSPE {report['rmspe']:.1f}%  Spearman {report['spearman']:.3f}",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
