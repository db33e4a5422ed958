"""The search's picture: E[LAT] against the target, and validation accuracy, epoch by epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from latkit.search.trainer import EpochRecord


def plot_history(
    history: Sequence[EpochRecord], target_ms: float, path: Path, title: str = "search"
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in history]
    fig, (lat, acc) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    lat.plot(
        epochs, [r.expected_ms for r in history], marker="o", label="E[LAT] (F under softmax α)"
    )
    lat.axhline(target_ms, color="tab:red", linestyle="--", label=f"target {target_ms:g} ms")
    warmup = [r.epoch for r in history if r.phase == "warmup"]
    for ax in (lat, acc):
        if warmup:
            ax.axvspan(0.5, max(warmup) + 0.5, color="0.9", label="warm-up (weights only)")
    lat.set_ylabel("ms")
    lat.legend(fontsize="small")
    acc.plot(epochs, [100 * r.val_acc for r in history], marker="o", color="tab:green")
    acc.set_ylabel("val accuracy of argmax path (%)")
    acc.set_xlabel("epoch")
    lat.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
