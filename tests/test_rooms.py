"""Rooms that say what they hold: no function longer than a reader takes in at once, and
`latkit/spaces/__init__.py` only handing names on (each space family has its own module).

Read as source with `ast`, so the check costs nothing and imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the folders of the package: the core and CLI, and those that install as latkit.*
FOLDERS = ("latkit", "profilers", "predictors", "search")
#: the most lines a function may run to, decorators not counted, its docstring counted
MAX_FUNCTION_LINES = 120
#: the most lines `latkit/spaces/__init__.py` may hold: imports, `__all__`, a docstring
MAX_SPACES_INIT_LINES = 60


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, line count) of every function and method in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_the_folders_hold_python_to_check():
    assert len(_sources()) > 50


def test_no_function_runs_past_the_limit():
    long = [
        f"{path.relative_to(ROOT)}:{line} {name}: {count} lines"
        for path in _sources()
        for name, line, count in _functions(path)
        if count > MAX_FUNCTION_LINES
    ]
    assert not long, (
        f"functions over {MAX_FUNCTION_LINES} lines: split them into named steps\n"
        + "\n".join(long)
    )


def test_the_spaces_package_only_hands_names_on():
    init = ROOT / "latkit" / "spaces" / "__init__.py"
    lines = len(init.read_text().splitlines())
    assert lines <= MAX_SPACES_INIT_LINES, f"{init.relative_to(ROOT)} has {lines} lines"
    tree = ast.parse(init.read_text())
    logic = [
        type(node).__name__
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    assert not logic, f"latkit/spaces/__init__.py defines {logic}: they belong in a module"
