"""What a person sees: the main commands in a real terminal (tmux) at 80 and 120 columns, and
the same commands piped to a file or run with NO_COLOR.

Each terminal run is one tmux session executing a script of commands; `capture-pane -J` joins the
lines the terminal itself wrapped, so a joined line longer than the width is a line the command
printed too long. The store and folders of the first run are reused by the next ones, so the
later runs also show the resume paths.
"""

from __future__ import annotations

import os
import pty
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_device

from latkit.cli import app

LATKIT = Path(sys.executable).parent / "latkit"
DONE = "__latkit_terminal_test_done__"
MARK = "### "
BAR = re.compile(r"━+.* \d+/\d+ +\d+:\d\d:\d\d ETA")
COUNT = re.compile(r"(?<![\w./])(\d+)/(\d+)(?![\w/])")
COMMANDS = [(c.name or c.callback.__name__).replace("_", "-") for c in app.registered_commands]


def _commands(root: Path) -> list[str]:
    device = root / "term-cpu.yaml"
    quick = "--epochs 1 --warmup-epochs 0 --final-epochs 1"
    return [
        *(f"{name} --help" for name in ["", *COMMANDS]),
        f"profile --device {device} --space proxyless-tiny --limit 8 --db s.sqlite",
        f"profile --device {device} --space proxyless-tiny --db s.sqlite",
        f"fit --device {device} --db s.sqlite --data-dir data",
        f"search --device {device} --target-ms 0.2 --db s.sqlite --data-dir data {quick} "
        "--overwrite",
        f"quickstart --db qs.sqlite --data-dir qsdata --networks 2 {quick}",
    ]


def _script(root: Path) -> Path:
    lines = ["cd " + shlex.quote(str(root))]
    for command in _commands(root):
        lines.append(f"echo {shlex.quote(MARK + command)}")
        lines.append(f"{shlex.quote(str(LATKIT))} {command}")
    path = root / "commands.sh"
    path.write_text("\n".join(lines) + "\n")
    return path


def _sections(text: str) -> dict[str, list[str]]:
    """Output lines by command, from the `### command` markers the script echoes."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK) :], [])
        elif current is not None and line != DONE:
            current.append(line.rstrip())
    return sections


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _in_tmux(script: Path, width: int, root: Path) -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing: .ci/run installs it (apt-get install -y tmux)")
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    conf = root / "tmux.conf"
    conf.write_text("set -g history-limit 100000\n")
    socket = f"latkit-test-{os.getpid()}-{width}"
    base = [tmux, "-L", socket, "-f", str(conf)]
    command = f"bash {shlex.quote(str(script))}; echo {DONE}; sleep 3600"
    subprocess.run(
        [*base, "new-session", "-d", "-x", str(width), "-y", "50", command],
        env=_environment(),
        check=True,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*base, "capture-pane", "-p", "-J", "-S", "-"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            if any(line.strip() == DONE for line in screen.splitlines()):
                return screen
            time.sleep(1)
        pytest.fail(f"the commands did not finish in the {width}-column terminal:\n{screen}")
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True)


def _problems(sections: dict[str, list[str]], width: int) -> list[str]:
    """Everything a reader would notice, one entry per offending line."""
    problems = []
    for command, lines in sections.items():
        where = f"`latkit {command}` at {width} columns"
        if not lines:
            problems.append(f"{where}: printed nothing")
        for line in lines:
            if len(line) > width:
                problems.append(f"{where}: a line of {len(line)} columns: {line}")
            if any(int(done) > int(total) for done, total in COUNT.findall(line)):
                problems.append(f"{where}: a count past its total: {line}")
            if re.search(r"(?<!:)//", line):
                problems.append(f"{where}: a placeholder lost to markup: {line}")
            if "…" in line:
                problems.append(f"{where}: text cut off: {line}")
            if "Traceback" in line:
                problems.append(f"{where}: a traceback: {line}")
            if "entropy" in line and not re.search(r"entropy \d", line):
                problems.append(f"{where}: a field split across lines: {line}")
    return problems


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("terminal")
    write_device(root / "term-cpu.yaml", name="term-cpu")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 120])
def test_commands_read_cleanly_in_a_terminal(workspace, width):
    screen = _in_tmux(_script(workspace), width, workspace)
    sections = _sections(screen)
    assert len(sections) == len(_commands(workspace)), sorted(sections)
    problems = _problems(sections, width)
    assert not problems, "\n".join(problems)
    for stage in ("1/5 profiling", "searching proxyless-tiny", "done in"):
        assert any(stage in line for line in sections[_commands(workspace)[-1]]), stage


@pytest.mark.slow
def test_piped_output_has_no_bars_and_no_escape_codes(workspace):
    result = subprocess.run(
        ["bash", str(_script(workspace))],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    assert not BAR.search(result.stdout), "a progress bar in piped output"
    sections = _sections(result.stdout)
    quickstart = sections[_commands(workspace)[-1]]
    stage = re.compile(r"1/5 profiling .*: (\d+/\d+ in|nothing to do)")
    assert any(stage.match(line) for line in quickstart), quickstart
    assert quickstart[-1].startswith("done in ")


def test_no_color_in_a_terminal_draws_no_escape_codes(workspace):
    """NO_COLOR on a real terminal (a pty): plain lines, no colours, no cursor movement."""
    device = workspace / "term-cpu.yaml"
    main, secondary = pty.openpty()
    env = dict(_environment(), NO_COLOR="1")
    process = subprocess.Popen(
        [
            str(LATKIT),
            "profile",
            "--device",
            str(device),
            "--space",
            "proxyless-tiny",
            "--limit",
            "4",
            "--db",
            str(workspace / "nocolor.sqlite"),
        ],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        cwd=workspace,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0, output.decode()
    os.close(main)
    text = output.decode()
    assert "\x1b" not in text, repr(text)
    assert re.search(r"profiling term-cpu: 4/4 in \d+:\d\d:\d\d", text), text


def test_the_command_line_starts_without_importing_torch():
    """`--help` and argument errors answer at once: torch (seconds to import) loads only when a
    command runs a workflow."""
    probe = (
        "import sys, latkit.cli; print([m for m in ('torch', 'scipy.stats') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
