"""MkDocs hooks: the CLI reference page, written at build time from the CLI itself.

`reference/cli.md` holds a marker; `on_page_markdown` replaces it with the `--help` of `latkit`
and of every command of `latkit.cli.app`, rendered by typer exactly as a terminal of
`WIDTH` columns shows it (no colour). Nothing is copied by hand, so the page cannot drift from
the code. The module imports nothing from MkDocs, so tests can call `cli_reference()` directly.

`on_startup` also lays out the import tree `latkit.*` under `build/api-src` for the API reference:
`profilers/`, `predictors/` and `search/` install as `latkit.profilers`, `latkit.predictors` and
`latkit.search` through pyproject's `package-dir`, which griffe (mkdocstrings' reader of source
files) cannot follow; a folder of symbolic links that has the installed shape can be read as is.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path
from typing import Any

MARKER = "<!-- latkit-cli-reference -->"
PAGE = "reference/cli.md"
WIDTH = 80  # latkit's output is laid out for terminals of 80 columns and wider
API_SRC = Path("build/api-src")  # relative to the repository root, as mkdocs.yml's `paths`


def package_dirs(root: Path) -> dict[str, Path]:
    """pyproject's `[tool.setuptools.package-dir]`: import name -> folder."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    with open(root / "pyproject.toml", "rb") as file:
        mapping = tomllib.load(file)["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def lay_out_api_source(root: Path) -> Path:
    """Build `root/API_SRC/latkit/...` as the installed package looks, out of symbolic links."""
    top = root / API_SRC
    shutil.rmtree(top, ignore_errors=True)
    dirs = package_dirs(root)
    for name, folder in sorted(dirs.items(), key=lambda item: item[0].count(".")):
        target = top.joinpath(*name.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            inner = f"{name}.{entry.name}"
            if entry.name == "__pycache__" or inner in dirs or (target / entry.name).exists():
                continue
            (target / entry.name).symlink_to(entry.resolve(), entry.is_dir())
    return top


def command_help() -> list[tuple[str, str]]:
    """(command path, help text) for `latkit` and each of its commands, in `--help` order."""
    import typer
    from typer import rich_utils

    from latkit.cli import app

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="latkit")
    contexts = [("latkit", root)]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if command is not None and not command.hidden:
            contexts.append(
                (f"latkit {name}", command.context_class(command, info_name=name, parent=root))
            )

    saved = (rich_utils.MAX_WIDTH, rich_utils.COLOR_SYSTEM, rich_utils.FORCE_TERMINAL)
    rich_utils.MAX_WIDTH, rich_utils.COLOR_SYSTEM, rich_utils.FORCE_TERMINAL = WIDTH, None, False
    try:
        pages = []
        for path, ctx in contexts:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                plain = ctx.command.get_help(ctx)  # typer prints its rich help, click returns it
            text = buffer.getvalue() + (plain or "")
            lines = [line.rstrip() for line in text.splitlines()]
            pages.append((path, "\n".join(lines).strip("\n")))
        return pages
    finally:
        rich_utils.MAX_WIDTH, rich_utils.COLOR_SYSTEM, rich_utils.FORCE_TERMINAL = saved


def cli_reference() -> str:
    """The Markdown that replaces MARKER: one section per command, its help in a text block."""
    sections = []
    for path, text in command_help():
        sections.append(f"## `{path}`\n\n```text\n{text}\n```\n")
    return "\n".join(sections)


def on_startup(**kwargs: Any) -> None:
    """MkDocs event, before any plugin's `on_config` (mkdocstrings reads its `paths` there): lay
    out the installed package tree."""
    lay_out_api_source(Path(__file__).resolve().parent.parent)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: fill in the CLI reference page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER}")
    return markdown.replace(MARKER, cli_reference())
