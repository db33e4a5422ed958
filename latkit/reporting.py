"""How long-running library code shows progress without knowing about the terminal.

Profilers, workflows and the search take a `Reporter`; the CLI passes one that draws rich
progress bars, notebooks and tests pass `SilentReporter` (or nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

Level = Literal["info", "warning", "success"]
#: advances a task by the given amount of work
Advance = Callable[[float], None]


class Reporter(Protocol):
    def task(self, description: str, total: float | None) -> Advance:
        """Start a stage with `total` units of work (None: unknown); return its advance."""

    def note(self, text: str, level: Level = "info") -> None:
        """A line for the person watching, e.g. "pausing until the phone cools"."""


class SilentReporter:
    """Reports nothing: the default for library calls."""

    def task(self, description: str, total: float | None) -> Advance:
        return lambda amount=1.0: None

    def note(self, text: str, level: Level = "info") -> None:
        pass
