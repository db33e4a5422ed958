"""The docs name only commands and options that exist.

Every `latkit ...` command line in README.md and docs/ (in code blocks and in inline code) must
name a real command of `latkit.cli.app`, and every `--option` it uses must be one of that
command's options. Placeholders (FILE, D, NETS.jsonl, ...) are not checked: only the command
name and the words that start with `--`. The app is introspected through typer's click commands; nothing is run.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer

from latkit.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]

FENCE = re.compile(r"^ *(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1")
# `latkit NAME` where latkit is a word of its own: at the start, after a space, `(`, `-m ` ...;
# not `latkit.store`, `latkit[vision]`, `/tmp/latkit/...`
COMMAND = re.compile(r"(?:^|(?<=[\s(]))latkit[ \t]+([A-Za-z][\w-]*)(.*)")
OPTION = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
HELP = {"--help"}


def commands() -> dict[str, set[str]]:
    """Every command of the app and the option names it accepts (both sides of --x/--no-x)."""
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="latkit")
    found = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        options = set(HELP)
        for param in command.params:
            if param.param_type_name == "option":
                options.update(param.opts, param.secondary_opts)
        found[name] = options
    return found


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every line of a fenced block, with shell continuations (a trailing
    backslash) joined and comments cut off, and of every inline code span, also one that wraps
    onto the next line of its paragraph."""
    lines, in_block, pending, start = [], False, "", 0
    prose: list[tuple[int, str]] = []  # the current paragraph outside blocks

    def flush() -> None:
        joined = " ".join(line for _, line in prose)
        offsets = [number for number, line in prose for _ in range(len(line) + 1)]
        lines.extend((offsets[m.start()], m.group(2)) for m in INLINE.finditer(joined))
        prose.clear()

    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            flush()
            in_block, pending = not in_block, ""
        elif in_block:
            if not pending:
                start = number
            continued = line.rstrip().endswith("\\")
            pending += line.rstrip().rstrip("\\") + " " if continued else line
            if not continued:
                lines.append((start, re.split(r"\s#\s", pending, maxsplit=1)[0]))
                pending = ""
        elif line.strip():
            prose.append((number, line))
        else:
            flush()
    flush()
    return lines


def command_uses(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, command, options) of every `latkit COMMAND ...` in a page."""
    uses = []
    for number, code in code_lines(text):
        for part in re.split(r"&&|\|\||[;|]", code):
            match = COMMAND.search(part)
            if match:
                uses.append((number, match.group(1), OPTION.findall(match.group(2))))
    return uses


def problems(text: str, known: dict[str, set[str]]) -> list[str]:
    """What a page names that the CLI does not have, one line each."""
    found = []
    for number, command, options in command_uses(text):
        if command not in known:
            found.append(f"line {number}: `latkit {command}` is not a command")
            continue
        found.extend(
            f"line {number}: `latkit {command}` has no option {option}"
            for option in options
            if option not in known[command]
        )
    return found


@pytest.fixture(scope="module")
def known() -> dict[str, set[str]]:
    return commands()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_command_line_names_real_commands_and_options(page, known):
    assert problems(page.read_text(encoding="utf-8"), known) == []


def test_the_docs_use_the_commands():
    """The check above checks something: the pages use most commands, with options."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    uses = command_uses(text)
    used = {command for _, command, _ in uses}
    assert {"profile", "fit", "validate", "predict", "search", "quickstart", "devices"} <= used
    assert sum(len(options) for _, _, options in uses) > 50


def test_a_wrong_command_or_option_is_caught(known):
    page = """
Run `latkit profle --device FILE`, then:

```bash
latkit fit --device local-cpu --no-such-option 3   # a comment may say --anything
latkit search --device D.yaml --target-ms 80 \\
    --space proxyless-mobile --epoch 2
pip install -e . && latkit quickstart --json qs.json
```

`latkit.store.read_measurements(db)` and `pip install 'latkit[vision]'` are no commands, and
a span may wrap: `latkit validate --device D
--networks 30 --sead 1`.
"""
    assert problems(page, known) == [
        "line 2: `latkit profle` is not a command",
        "line 5: `latkit fit` has no option --no-such-option",
        "line 6: `latkit search` has no option --epoch",
        "line 12: `latkit validate` has no option --sead",
    ]


def test_the_cli_reference_covers_every_command(known):
    """docs/hooks.py writes the CLI reference at build time: one section per command."""
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    reference = hooks.cli_reference()
    for name in known:
        assert f"## `latkit {name}`" in reference
        assert f"Usage: latkit {name} [OPTIONS]" in reference
    assert "\x1b[" not in reference  # no colour codes
    assert hooks.MARKER in (ROOT / "docs" / hooks.PAGE).read_text(encoding="utf-8")
