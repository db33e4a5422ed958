"""What a person sees in the terminal: progress, notes, and lines that fit its width.

On a terminal, each long step is a progress bar with its count, elapsed and remaining time.
Piped to a file, or with NO_COLOR set, there are no bars and no escape codes: one plain line per
finished step (and one every `PLAIN_EVERY_S` seconds while a long step runs). Lines are packed
field by field, so a narrow terminal breaks them between fields, never inside one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from latkit.reporting import Advance, Level

#: NO_COLOR (no-color.org) means no escape codes at all, not just no colours
_STYLES = None if os.environ.get("NO_COLOR") else "auto"
#: markup off: names, keys and paths print as they are, whatever brackets they hold
console = Console(color_system=_STYLES, highlight=False, markup=False)
err_console = Console(stderr=True, color_system=_STYLES, highlight=False, markup=False)
PLAIN_EVERY_S = 30.0
LEVEL_STYLE = {"info": None, "warning": "yellow", "success": "green"}
LEVEL_PREFIX = {"info": "", "warning": "warning: ", "success": ""}


def interactive() -> bool:
    """Whether to draw live bars: a real terminal, colours allowed, not TERM=dumb."""
    return console.is_terminal and not console.is_dumb_terminal and _STYLES is not None


def clock(seconds: float) -> str:
    """`0:01:31`, the format of the bars' time columns."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def indented(text: str, width: int, indent: int) -> str:
    """`text` after `indent` spaces where that still fits `width`; a field is never broken, so
    one too long for the indent starts the line instead."""
    return " " * indent + text if indent + len(text) <= width else text


def pack(fields: Sequence[str], width: int, indent: int = 4, sep: str = "  ") -> list[str]:
    """Join `fields` into lines of at most `width` characters, breaking only between fields;
    continuation lines are indented. A field longer than a line gets a line of its own."""
    lines: list[str] = []
    line = ""
    for field in fields:
        candidate = f"{line}{sep}{field}" if line else field
        if not line or len(candidate) <= width:
            line = candidate
            continue
        lines.append(line)
        line = indented(field, width, indent)
    if line:
        lines.append(line)
    return lines


#: words that belong to the word before them: units, and the joints of `a .. b` and `T = x`
_GLUE = {"ms", "s", "%", "°C", "MiB", "GiB", "..", "="}


def words(text: str) -> list[str]:
    """`text` split at spaces, keeping a number with its unit, `a .. b` and `T = x` whole, so
    wrapping never strands a unit or half an expression."""
    out: list[str] = []
    for word in text.split(" "):
        if out and (word in _GLUE or out[-1].endswith((" ..", " ="))):
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    return out


def wrap(text: str, width: int, indent: int = 2) -> list[str]:
    """Prose wrapped at spaces to `width`, numbers kept with their units (see `words`)."""
    return pack(words(text), width, indent, sep=" ")


def labelled(label: str, style: str, text: str) -> Text:
    """`label` in `style`, then `text` as it is: how errors and warnings start."""
    return Text.assemble((label, style), text)


def print_fields(fields: Sequence[str], indent: int = 4, sep: str = "  ") -> None:
    """Print `fields` packed to the console's width (see `pack`), with no markup."""
    for line in pack(fields, console.width, indent, sep):
        console.print(line, soft_wrap=True)


def shown(path: str | Path) -> str:
    """A path as short as it can be shown: relative to the working folder when inside it."""
    path = Path(path)
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


class RichReporter:
    """A `latkit.reporting.Reporter` drawing one bar per task; notes print above the bars.
    A task's count never passes its total, whatever its caller reports."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def task(self, description: str, total: float | None) -> Advance:
        task = self.progress.add_task(escape(description), total=total)
        done = 0.0

        def advance(amount: float = 1.0) -> None:
            nonlocal done
            done = done + amount if total is None else min(float(total), done + amount)
            self.progress.update(task, completed=done)

        return advance

    def note(self, text: str, level: Level = "info") -> None:
        out = self.progress.console
        for line in wrap(text, out.width):
            out.print(line, style=LEVEL_STYLE[level], soft_wrap=True)


class PlainReporter:
    """A `latkit.reporting.Reporter` for logs: one line when a task finishes, one every
    `every_s` seconds while it runs, no bars and no escape codes."""

    def __init__(self, out: Console, every_s: float = PLAIN_EVERY_S) -> None:
        self.out = out
        self.every_s = every_s

    def task(self, description: str, total: float | None) -> Advance:
        started = last = time.perf_counter()
        done = 0.0
        finished = False
        if total == 0:
            self.note(f"{description}: nothing to do")
            finished = True

        def count() -> str:
            return f"{done:g}" if total is None else f"{int(done)}/{int(total)}"

        def advance(amount: float = 1.0) -> None:
            nonlocal done, last, finished
            if finished:
                return
            done = done + amount if total is None else min(float(total), done + amount)
            now = time.perf_counter()
            if total is not None and done >= total:
                finished = True
                self.note(f"{description}: {count()} in {clock(now - started)}")
            elif now - last >= self.every_s:
                last = now
                eta = (now - started) / done * (total - done) if total and done else None
                tail = "" if eta is None else f", ETA {clock(eta)}"
                self.note(f"{description}: {count()}, {clock(now - started)} elapsed{tail}")

        return advance

    def note(self, text: str, level: Level = "info") -> None:
        for line in wrap(LEVEL_PREFIX[level] + text, self.out.width):
            self.out.print(line, soft_wrap=True)


#: columns a bar row needs besides its description: bar, count, elapsed, `ETA`, remaining
_BAR_COLUMNS = 8 + 7 + 7 + 3 + 7 + 5


class _Description(TextColumn):
    """The task's description, folded onto a second line rather than pushing the count and
    times off a narrow terminal."""

    def get_table_column(self) -> Column:
        return Column(
            no_wrap=False, overflow="fold", max_width=max(12, console.width - _BAR_COLUMNS)
        )


def _fixed(column: type[ProgressColumn], *args: str) -> ProgressColumn:
    return column(*args, table_column=Column(no_wrap=True))


def progress_bar() -> Progress:
    """Description (folded when it is too long), bar, count, elapsed, ETA."""
    return Progress(
        _Description("[bold]{task.description}"),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=8)),
        _fixed(MofNCompleteColumn),
        _fixed(TimeElapsedColumn),
        _fixed(TextColumn, "ETA"),
        _fixed(TimeRemainingColumn),
        console=console,
        expand=True,
    )


#: when the first progress of this command started: long commands end with their wall time
_started: float | None = None


@contextlib.contextmanager
def reporting() -> Iterator[RichReporter | PlainReporter]:
    """Progress for the duration of a block: live bars on a terminal, plain lines otherwise."""
    global _started
    _started = _started or time.perf_counter()
    if interactive():
        with progress_bar() as bar:
            yield RichReporter(bar)
    else:
        yield PlainReporter(console)


def print_wall_time() -> None:
    """The last line of a command that showed progress: how long the whole command took."""
    if _started is not None:
        console.print(f"done in {clock(time.perf_counter() - _started)}")
