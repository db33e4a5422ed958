"""Reading the files users hand to latkit, writing the ones it makes.

Every read failure is one line naming the file; every write is atomic, so an interruption never
leaves a torn file behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text, so no readable {what}") from None


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


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; once written it is fsynced and replaces `path`.

    An interruption at any point leaves the old file whole (or no file), never a torn one. The
    temporary name keeps the suffix, so writers that pick a format by suffix (matplotlib) work.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise LatkitError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        with suppress(OSError):
            tmp.unlink()


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` to `path` through `replacing`: all of it or nothing."""
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | Path, payload: Any) -> Path:
    """`payload` as indented JSON (numpy floats and paths as plain values), atomically."""
    return write_atomic(path, json.dumps(payload, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else float(value)
