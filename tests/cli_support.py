"""Running the real `latkit` entry point inside a test's process."""

from __future__ import annotations

import sys

import pytest

from latkit.cli import main


def fail(argv: list[object], monkeypatch, capsys) -> str:
    """Run `latkit ARGV` through the real entry point; it must exit 2 with one line on stderr
    and no traceback: that line."""
    monkeypatch.setattr(sys, "argv", ["latkit", *map(str, argv)])
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert exited.value.code == 2 and len(lines) == 1, f"{exited.value.code}\n{out}\n{err}"
    assert "Traceback" not in out + err
    return lines[0]
