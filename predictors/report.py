"""Reports of F against measured whole networks: a CSV of both, and the predicted-vs-measured plot."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from latkit.files import replacing


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with replacing(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "error_pct"])
        writer.writeheader()
        for row in rows:
            error = 100 * (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
            writer.writerow({**row, "error_pct": round(error, 3)})


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
    with replacing(path) as tmp:
        fig.savefig(tmp)
