"""`--help` reads as other Python CLIs' help does: click's type names (INTEGER, FLOAT, TEXT,
PATH), no type on a flag, `--x/--no-x` where a flag has an opposite; and it fits 80 columns
without a cut word.

Every command's help is rendered in-process (typer's CliRunner), so this runs in a second; the
terminal test (tests/test_terminal.py) checks the same commands in a real terminal.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from latkit.cli import app

COMMANDS = [(c.name or c.callback.__name__).replace("_", "-") for c in app.registered_commands]
#: what typer's newer releases write where click writes INTEGER, TEXT, PATH, ...
NOT_CLICK = re.compile(r"<(bool|str|int|float|path)[^>]*>|list\[")


def _help(*command: str, width: int = 80) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_writes_click_type_names(command):
    text = _help(*filter(None, [command]))
    assert not NOT_CLICK.search(text), NOT_CLICK.search(text).group(0)
    assert "…" not in text, "a word cut off"
    assert max(len(line) for line in text.splitlines()) <= 80


def test_options_show_their_types_and_flags_none():
    text = _help("search")
    assert re.search(r"--target-ms\s+-t\s+FLOAT", text)
    assert re.search(r"--epochs\s+INTEGER RANGE", text)
    assert re.search(r"--space\s+TEXT", text)
    assert re.search(r"--json\s+PATH", text)
    assert re.search(r"--hard-budget\s+Derive", text), "a flag shows no type"
    assert re.search(r"--measure\s+--no-measure\s+Time", text)
    assert re.search(r"--help\s+Show this", text)


def test_an_argument_is_named_in_capitals_in_the_usage():
    text = _help("import-lut")
    assert "latkit import-lut [OPTIONS] FILE" in " ".join(text.split())
    assert re.search(r"file\s+PATH", text)
