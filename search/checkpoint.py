"""The search checkpoint: one file in the search's output folder, replaced atomically.

It holds `SearchTrainer.state_dict()` (supernet weights and α, both optimizers and the strategy's
loss state, the loss scaler, where the loop stands, the history, every RNG state) and the settings
that decide the search, so `--resume` refuses a checkpoint of a different search. It is read with
`torch.load(weights_only=True)`: tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from latkit.errors import LatkitError
from latkit.files import replacing
from latkit.search.trainer import SearchTrainer

FORMAT = 1
NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    """Write all of it or nothing: an interruption leaves the previous checkpoint whole."""
    with replacing(path) as tmp:
        torch.save({"format": FORMAT, "settings": dict(settings), "state": dict(state)}, tmp)
    return path


def load_checkpoint(path: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer state in `path`, after checking that it is a checkpoint of this search."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on a torn or foreign file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LatkitError(f"{path}: not a readable latkit checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LatkitError(f"{path}: not a latkit search checkpoint of format {FORMAT}")
    stored = payload.get("settings", {})
    for key in sorted(set(settings) | set(stored)):
        if stored.get(key) != settings.get(key):
            raise LatkitError(
                f"--resume: {path} is a search with {key} = {stored.get(key)!r}, not "
                f"{settings.get(key)!r}; run with the same arguments, or use another --out"
            )
    return payload["state"]


class Checkpointer:
    """Where a search keeps its checkpoint; only the process that `writes` touches the file."""

    def __init__(self, path: Path, settings: Mapping[str, Any], writes: bool = True) -> None:
        self.path, self.settings, self.writes = Path(path), dict(settings), writes
        self.saved_bytes = 0
        #: the file holds this run's search (saved or resumed from), not an older one
        self.current = False

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, trainer: SearchTrainer) -> None:
        if self.writes:
            save_checkpoint(self.path, trainer.state_dict(), self.settings)
            self.saved_bytes = self.path.stat().st_size
        self.current = True

    def restore(self, trainer: SearchTrainer) -> bool:
        """Load the checkpoint into `trainer`; False when there is none yet."""
        if not self.exists():
            return False
        trainer.load_state_dict(load_checkpoint(self.path, self.settings))
        self.current = True
        return True
