"""Reading the files users hand to latkit: every failure is one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from latkit.errors import LatkitError


def read_text(path: str | Path, what: str, error: type[LatkitError] = LatkitError) -> str:
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None


def read_yaml(path: str | Path, what: str, error: type[LatkitError] = LatkitError) -> Any:
    """Parsed YAML; a syntax error names its line."""
    text = read_text(path, what, error)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise error(f"{path}: bad YAML{where}: {problem}") from None


def read_json(path: str | Path, what: str, error: type[LatkitError] = LatkitError) -> Any:
    """Parsed JSON; a syntax error names its line."""
    text = read_text(path, what, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not a JSON {what} ({exc.msg}, line {exc.lineno})") from None
