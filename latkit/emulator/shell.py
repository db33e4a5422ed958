"""The command language of the emulated phone's `sh`: quotes, `\\`, `;`, `&&`, `||` and `$?`.

Anything else a real shell would do (pipes, redirections, substitutions) is refused with
`ShellSyntaxError`, so a command latkit sends can never mean more than its words.
"""

from __future__ import annotations

import io


class ShellSyntaxError(Exception):
    """A command line using shell syntax the emulated phone does not implement."""


_STATUS = object()  # the `$?` placeholder inside a parsed word
_OPERATORS = {";": ";", "&&": "&&", "||": "||"}
_UNSUPPORTED = set("|&<>()`$")


def parse_command_line(line: str) -> list[tuple[str, list[list[object]]]]:
    """Split a command line into (connector, words) pairs, as sh would (quotes, `\\`, `$?`).

    Words are lists of literal strings and `$?` placeholders, expanded when the command runs.
    Pipes, redirections, substitutions and variables other than `$?` raise ShellSyntaxError.
    """
    commands: list[tuple[str, list[list[object]]]] = []
    words: list[list[object]] = []
    word: list[object] | None = None
    connector = ";"
    i, n = 0, len(line)

    def literal(text: str) -> None:
        nonlocal word
        if word is None:
            word = []
        word.append(text)

    def end_word() -> None:
        nonlocal word
        if word is not None:
            words.append(word)
            word = None

    def end_command(op: str) -> None:
        nonlocal words, connector
        end_word()
        if not words:
            raise ShellSyntaxError(f"syntax error: unexpected '{op}'")
        commands.append((connector, words))
        words, connector = [], op

    while i < n:
        c = line[i]
        if c == "\n" and (words or word is not None):
            end_command(";")
        elif c in " \t\n":
            end_word()
        elif c == "'":
            close = line.find("'", i + 1)
            if close < 0:
                raise ShellSyntaxError("syntax error: unterminated quoted string")
            literal(line[i + 1 : close])
            i = close
        elif c == '"':
            literal("")
            i += 1
            while True:
                if i >= n:
                    raise ShellSyntaxError("syntax error: unterminated quoted string")
                c = line[i]
                if c == '"':
                    break
                if c == "\\" and i + 1 < n and line[i + 1] in '$`"\\\n':
                    literal(line[i + 1])
                    i += 2
                    continue
                if c == "$" and line[i + 1 : i + 2] == "?":
                    word.append(_STATUS)  # type: ignore[union-attr]
                    i += 2
                    continue
                if c in "$`":
                    raise ShellSyntaxError(f"'{c}' is not supported by the emulated phone's shell")
                literal(c)
                i += 1
        elif c == "\\":
            literal(line[i + 1 : i + 2])
            i += 1
        elif c == "$" and line[i + 1 : i + 2] == "?":
            if word is None:
                word = []
            word.append(_STATUS)
            i += 1
        elif line[i : i + 2] in _OPERATORS:
            end_command(line[i : i + 2])
            i += 1
        elif c == ";":
            end_command(";")
        elif c in _UNSUPPORTED:
            raise ShellSyntaxError(f"'{c}' is not supported by the emulated phone's shell")
        elif c == "#" and word is None:
            break
        else:
            literal(c)
        i += 1
    end_word()
    if words:
        commands.append((connector, words))
    elif connector in ("&&", "||"):
        raise ShellSyntaxError(f"syntax error: unexpected end after '{connector}'")
    return commands


def expand(word: list[object], status: int) -> str:
    return "".join(str(status) if part is _STATUS else str(part) for part in word)


class Output:
    """stdout and stderr of one command line."""

    def __init__(self) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.both = io.StringIO()  # in the order written: what a shell v1 stream carries

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.both.write(text)

    def err(self, text: str) -> None:
        self.stderr.write(text)
        self.both.write(text)
