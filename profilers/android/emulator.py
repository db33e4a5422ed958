"""An emulated Android phone: a loopback TCP server that speaks the real ADB wire protocol.

It lets tests, CI and people without a phone run the whole Android path: `adb connect`,
adb-shell's `AdbDeviceTcp` and latkit's profiler all talk to it as to a phone on wireless debugging.

- Transport: CNXN with a real device banner, optional AUTH that verifies the RSA signature of the
  token against configured `adbkey.pub` keys, OPEN/OKAY/WRTE/CLSE streams with flow control.
- Services: `shell:` (v1: output then close), `shell,v2,...:` (stdout/stderr/exit frames) and
  `exec:`; `sync:` with STAT, STA2/LST2, LIST, SEND, RECV and QUIT.
- Shell: a small POSIX-like command language (quotes, `;`, `&&`, `||`, `$?`) over a sandbox folder
  that holds the phone's writable trees `/data/local/tmp` and `/sdcard`, plus a simulated `/sys`
  (thermal zones, cpufreq). `/sdcard` is mounted noexec, as on real phones.
- `benchmark_model`: any executable file of that name pushed to the phone runs the `--graph`
  `.tflite` with LiteRT on the host and prints the current benchmark_model output format with the
  real host timings. Its numbers are host-CPU numbers, and latkit labels them so.
- Faults for tests: a temperature schedule, a connection dropped at the Nth service opened (at
  its OPEN, or after it did its work but before it answered), and an unauthorized state in which
  no key is ever accepted.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import posixpath
import queue
import resource
import secrets
import shutil
import socket
import socketserver
import stat
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from profilers.android.device import ABI_MACHINES, ELF_MACHINES, elf_machine
from profilers.android.protocol import (
    A_AUTH,
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_VERSION,
    A_WRTE,
    AUTH_RSAPUBLICKEY,
    AUTH_SIGNATURE,
    AUTH_TOKEN,
    DENT_V1,
    HEADER,
    MAX_PAYLOAD,
    SHELL_EXIT,
    SHELL_STDERR,
    SHELL_STDOUT,
    STAT_V1,
    STAT_V2,
    SYNC_DATA_MAX,
    SYNC_REQUEST,
    TOKEN_SIZE,
    Packet,
    ProtocolError,
    ShellResult,
    decode_adb_public_key,
    parse_header,
    parse_service,
    shell_frame,
    sync_request,
    verify_token,
)

WRITABLE_ROOTS = ("/data/local/tmp", "/sdcard")
NOEXEC_ROOTS = ("/sdcard",)
MODEL = "Emulated Phone (host CPU)"
ABI = "arm64-v8a"
#: 4 little cores then 4 big ones, like most phones: taskset mask f0 = the big cores
CPU_MAX_KHZ = (1804800,) * 4 + (2841600,) * 4
ENOENT = 2


@dataclass
class Faults:
    """What goes wrong on purpose.

    `temperatures`: °C returned by successive reads of the SoC thermal zone (the last one sticks).
    `drop_after`: the connection is cut when the host opens service number `drop_after + 1`
    (counted over the phone's lifetime); it fires once, like an unplugged cable.
    `drop_mid_stream`: that service is accepted and does its work (the command runs, the file is
    written) and the cut comes just before the phone answers, instead of at the OPEN.
    `unauthorized`: AUTH is required and never accepted (the prompt on the phone is ignored).
    """

    temperatures: Sequence[float] = ()
    drop_after: int | None = None
    drop_mid_stream: bool = False
    unauthorized: bool = False


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


def _expand(word: list[object], status: int) -> str:
    return "".join(str(status) if part is _STATUS else str(part) for part in word)


class _Out:
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


class FileError(Exception):
    """An errno-style failure of a path operation, with the message a phone would print."""

    def __init__(self, message: str, errno: int = ENOENT) -> None:
        super().__init__(message)
        self.errno = errno


class EmulatedShell:
    """The phone's filesystem and `sh`, confined to a sandbox folder on the host."""

    def __init__(
        self,
        root: Path,
        props: dict[str, str],
        faults: Faults,
        runner: Callable[[list[str], _Out], int],
    ) -> None:
        self.root = root
        self.props = props
        self.faults = faults
        self.run_benchmark = runner
        self.commands: list[str] = []
        self.temperature_reads = 0
        self.lock = threading.RLock()
        for top in WRITABLE_ROOTS:
            self.host_path(top).mkdir(parents=True, exist_ok=True)
        self.builtins: dict[str, Callable[[list[str], _Out], int]] = {
            "cat": self._cat,
            "chmod": self._chmod,
            "dumpsys": self._dumpsys,
            "echo": self._echo,
            "getprop": self._getprop,
            "ls": self._ls,
            "mkdir": self._mkdir,
            "rm": self._rm,
            "sha256sum": self._sha256sum,
            "taskset": self._taskset,
            "touch": self._touch,
            "true": lambda argv, io_: 0,
            "false": lambda argv, io_: 1,
        }

    # --- paths ----------------------------------------------------------------------------------

    @staticmethod
    def normalize(path: str) -> str:
        return posixpath.normpath(posixpath.join("/", path))

    @staticmethod
    def _under(path: str, roots: Sequence[str]) -> bool:
        return any(path == root or path.startswith(root + "/") for root in roots)

    def host_path(self, phone_path: str) -> Path:
        """Where a phone path inside the writable trees lives on the host (never outside root)."""
        path = self.normalize(phone_path)
        if not self._under(path, WRITABLE_ROOTS):
            raise FileError(f"{phone_path}: Read-only file system", 30)
        host = self.root.joinpath(*path.strip("/").split("/"))
        if not host.resolve().is_relative_to(self.root.resolve()):
            raise FileError(f"{phone_path}: Permission denied", 13)
        return host

    def virtual_files(self) -> dict[str, Callable[[], str]]:
        """The simulated /sys: thermal zones and cpufreq, computed when read."""
        files: dict[str, Callable[[], str]] = {
            "/sys/devices/system/cpu/possible": lambda: f"0-{len(CPU_MAX_KHZ) - 1}\n",
            "/sys/devices/system/cpu/present": lambda: f"0-{len(CPU_MAX_KHZ) - 1}\n",
            "/sys/devices/system/cpu/online": lambda: f"0-{len(CPU_MAX_KHZ) - 1}\n",
            "/sys/class/thermal/thermal_zone0/type": lambda: "soc_thermal\n",
            "/sys/class/thermal/thermal_zone0/temp": lambda: f"{self.soc_millicelsius()}\n",
            "/sys/class/thermal/thermal_zone1/type": lambda: "battery\n",
            "/sys/class/thermal/thermal_zone1/temp": lambda: "30000\n",
        }
        for cpu, max_khz in enumerate(CPU_MAX_KHZ):
            base = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq"
            files[f"{base}/cpuinfo_max_freq"] = lambda k=max_khz: f"{k}\n"
            files[f"{base}/cpuinfo_min_freq"] = lambda: "300000\n"
            files[f"{base}/scaling_cur_freq"] = lambda k=max_khz: f"{k * 3 // 4}\n"
            files[f"{base}/scaling_governor"] = lambda: "schedutil\n"
        return files

    def soc_millicelsius(self) -> int:
        """The next reading of the temperature schedule (35 °C without one)."""
        schedule = self.faults.temperatures
        if not schedule:
            return 35000
        value = schedule[min(self.temperature_reads, len(schedule) - 1)]
        self.temperature_reads += 1
        return int(round(value * 1000))

    def _virtual_dirs(self) -> dict[str, set[str]]:
        dirs: dict[str, set[str]] = {}
        for path in self.virtual_files():
            parent, name = posixpath.split(path)
            while parent != "/":
                dirs.setdefault(parent, set()).add(name)
                parent, name = posixpath.split(parent)
            dirs.setdefault("/", set()).add(name)
        for top in WRITABLE_ROOTS:
            parent, name = posixpath.split(top)
            while parent:
                dirs.setdefault(parent, set()).add(name)
                if parent == "/":
                    break
                parent, name = posixpath.split(parent)
        return dirs

    def read(self, phone_path: str) -> bytes:
        path = self.normalize(phone_path)
        virtual = self.virtual_files()
        if path in virtual:
            return virtual[path]().encode()
        if path in self._virtual_dirs():
            raise FileError(f"{phone_path}: Is a directory", 21)
        if not self._under(path, WRITABLE_ROOTS):
            raise FileError(f"{phone_path}: No such file or directory")
        host = self.host_path(path)
        if host.is_dir():
            raise FileError(f"{phone_path}: Is a directory", 21)
        try:
            return host.read_bytes()
        except FileNotFoundError:
            raise FileError(f"{phone_path}: No such file or directory") from None

    def write(self, phone_path: str, data: bytes, mode: int) -> None:
        host = self.host_path(phone_path)
        host.parent.mkdir(parents=True, exist_ok=True)
        if host.is_dir():
            raise FileError(f"{phone_path}: Is a directory", 21)
        host.write_bytes(data)
        host.chmod(mode & 0o777)

    def stat(self, phone_path: str) -> tuple[int, int, int]:
        """(mode, size, mtime) of a phone path; FileError if it does not exist."""
        path = self.normalize(phone_path)
        if path in self.virtual_files():
            return stat.S_IFREG | 0o444, 4096, 0
        if path in self._virtual_dirs() and not self._under(path, WRITABLE_ROOTS):
            return stat.S_IFDIR | 0o755, 0, 0
        if not self._under(path, WRITABLE_ROOTS):
            raise FileError(f"{phone_path}: No such file or directory")
        try:
            st = self.host_path(path).stat()
        except FileNotFoundError:
            raise FileError(f"{phone_path}: No such file or directory") from None
        return st.st_mode, st.st_size, int(st.st_mtime)

    def listdir(self, phone_path: str) -> list[str]:
        path = self.normalize(phone_path)
        names = set(self._virtual_dirs().get(path, set()))
        if self._under(path, WRITABLE_ROOTS):
            host = self.host_path(path)
            if not host.is_dir():
                if host.exists():
                    return [posixpath.basename(path)]
                raise FileError(f"{phone_path}: No such file or directory")
            names.update(p.name for p in host.iterdir())
        elif not names:
            if path in self.virtual_files():
                return [posixpath.basename(path)]
            raise FileError(f"{phone_path}: No such file or directory")
        return sorted(names)

    # --- the shell ------------------------------------------------------------------------------

    def _interpret(self, line: str) -> tuple[_Out, int]:
        self.commands.append(line)
        out = _Out()
        try:
            commands = parse_command_line(line)
        except ShellSyntaxError as exc:
            out.err(f"sh: {exc}\n")
            return out, 2
        status = 0
        for connector, words in commands:
            if (connector == "&&" and status != 0) or (connector == "||" and status == 0):
                continue
            status = self.run([_expand(w, status) for w in words], out)
        return out, status

    def execute(self, line: str) -> ShellResult:
        """Run one command line as `sh -c` would; unknown commands fail with status 127."""
        with self.lock:
            out, status = self._interpret(line)
        return ShellResult(out.stdout.getvalue(), out.stderr.getvalue(), status)

    def execute_merged(self, line: str) -> str:
        """stdout and stderr interleaved as written, as a shell v1 stream carries them."""
        with self.lock:
            out, _status = self._interpret(line)
        return out.both.getvalue()

    def run(self, argv: list[str], out: _Out) -> int:
        if not argv:
            return 0
        name = argv[0]
        if "/" in name:
            return self._exec(argv, out)
        builtin = self.builtins.get(name)
        if builtin is None:
            out.err(f"sh: {name}: not found\n")
            return 127
        return builtin(argv, out)

    def _exec(self, argv: list[str], out: _Out) -> int:
        path = self.normalize(argv[0])
        try:
            mode, _size, _mtime = self.stat(path)
        except FileError:
            out.err(f"sh: {argv[0]}: not found\n")
            return 127
        if stat.S_ISDIR(mode) or not mode & 0o111 or self._under(path, NOEXEC_ROOTS):
            out.err(f"sh: {argv[0]}: can't execute: Permission denied\n")
            return 126
        machine = elf_machine(self.read(path))
        if machine is not None and machine != ELF_MACHINES[ABI_MACHINES[ABI]]:
            out.err(f"sh: {argv[0]}: can't execute: Exec format error ({machine} ELF)\n")
            return 126
        if posixpath.basename(path) != "benchmark_model":
            out.err(f"sh: {argv[0]}: the emulated phone only runs benchmark_model\n")
            return 126
        return self.run_benchmark(argv[1:], out)

    def _paths(self, argv: list[str], flags: str) -> tuple[set[str], list[str]]:
        options: set[str] = set()
        paths = []
        for arg in argv[1:]:
            if arg.startswith("-") and len(arg) > 1 and not paths and set(arg[1:]) <= set(flags):
                options.update(arg[1:])
            else:
                paths.append(arg)
        return options, paths

    def _cat(self, argv: list[str], out: _Out) -> int:
        status = 0
        for path in argv[1:]:
            try:
                out.out(self.read(path).decode("utf-8", "replace"))
            except FileError as exc:
                out.err(f"cat: {exc}\n")
                status = 1
        return status

    def _echo(self, argv: list[str], out: _Out) -> int:
        newline = not (len(argv) > 1 and argv[1] == "-n")
        words = argv[2:] if not newline else argv[1:]
        out.out(" ".join(words) + ("\n" if newline else ""))
        return 0

    def _getprop(self, argv: list[str], out: _Out) -> int:
        if len(argv) > 1:
            out.out(self.props.get(argv[1], argv[2] if len(argv) > 2 else "") + "\n")
        else:
            out.out("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())))
        return 0

    def _dumpsys(self, argv: list[str], out: _Out) -> int:
        if argv[1:] != ["battery"]:
            out.err(f"Can't find service: {' '.join(argv[1:])}\n")
            return 1
        tenths = self.soc_millicelsius() // 100
        out.out(
            "Current Battery Service state:\n  AC powered: false\n  USB powered: true\n"
            "  status: 2\n  health: 2\n  present: true\n  level: 87\n  scale: 100\n"
            f"  voltage: 4215\n  temperature: {tenths}\n  technology: Li-ion\n"
        )
        return 0

    def _ls(self, argv: list[str], out: _Out) -> int:
        _options, paths = self._paths(argv, "1aA")
        status = 0
        for path in paths or ["/"]:
            try:
                out.out("".join(f"{name}\n" for name in self.listdir(path)))
            except FileError as exc:
                out.err(f"ls: {exc}\n")
                status = 1
        return status

    def _mkdir(self, argv: list[str], out: _Out) -> int:
        options, paths = self._paths(argv, "p")
        status = 0
        for path in paths:
            try:
                host = self.host_path(path)
                if host.exists() and "p" not in options:
                    raise FileError(f"{path}: File exists", 17)
                host.mkdir(parents="p" in options, exist_ok="p" in options)
            except FileError as exc:
                out.err(f"mkdir: {exc}\n")
                status = 1
            except FileNotFoundError:
                out.err(f"mkdir: {path}: No such file or directory\n")
                status = 1
        return status

    def _rm(self, argv: list[str], out: _Out) -> int:
        options, paths = self._paths(argv, "frR")
        status = 0
        for path in paths:
            try:
                if self.normalize(path) in WRITABLE_ROOTS:
                    raise FileError(f"{path}: Permission denied", 13)
                host = self.host_path(path)
                if host.is_dir():
                    if not options & {"r", "R"}:
                        raise FileError(f"{path}: Is a directory", 21)
                    shutil.rmtree(host)
                elif host.exists():
                    host.unlink()
                elif "f" not in options:
                    raise FileError(f"{path}: No such file or directory")
            except FileError as exc:
                out.err(f"rm: {exc}\n")
                status = 1
        return status

    def _chmod(self, argv: list[str], out: _Out) -> int:
        if len(argv) < 3:
            out.err("chmod: Need 2 arguments\n")
            return 1
        mode_text, paths = argv[1], argv[2:]
        status = 0
        for path in paths:
            try:
                host = self.host_path(path)
                if not host.exists():
                    raise FileError(f"{path}: No such file or directory")
                current = host.stat().st_mode & 0o777
                host.chmod(_chmod_mode(mode_text, current))
            except FileError as exc:
                out.err(f"chmod: {exc}\n")
                status = 1
            except ValueError:
                out.err(f"chmod: bad mode '{mode_text}'\n")
                return 1
        return status

    def _sha256sum(self, argv: list[str], out: _Out) -> int:
        status = 0
        for path in argv[1:]:
            try:
                out.out(f"{hashlib.sha256(self.read(path)).hexdigest()}  {path}\n")
            except FileError as exc:
                out.err(f"sha256sum: {exc}\n")
                status = 1
        return status

    def _taskset(self, argv: list[str], out: _Out) -> int:
        if len(argv) < 3:
            out.err("usage: taskset [-ap] [mask] [PID | cmd [args...]]\n")
            return 1
        try:
            mask = int(argv[1], 16)
        except ValueError:
            out.err(f"taskset: bad mask '{argv[1]}'\n")
            return 1
        if mask & ((1 << len(CPU_MAX_KHZ)) - 1) == 0:
            out.err("taskset: sched_setaffinity: Invalid argument\n")
            return 1
        return self.run(argv[2:], out)

    def _touch(self, argv: list[str], out: _Out) -> int:
        status = 0
        for path in argv[1:]:
            try:
                host = self.host_path(path)
                if not host.parent.is_dir():
                    raise FileError(f"{path}: No such file or directory")
                host.touch()
            except FileError as exc:
                out.err(f"touch: {exc}\n")
                status = 1
        return status


def _chmod_mode(text: str, current: int) -> int:
    """Octal modes and the `+x`/`-w`/`u+x` forms the profiler or a user might send."""
    if text and all(c in "01234567" for c in text):
        return int(text, 8) & 0o7777
    who, op, perms = "", "", ""
    for i, c in enumerate(text):
        if c in "+-=":
            who, op, perms = text[:i], c, text[i + 1 :]
            break
    if not op or set(who) - set("ugoa") or not perms or set(perms) - set("rwx"):
        raise ValueError(text)
    bits = sum({"r": 4, "w": 2, "x": 1}[p] for p in perms)
    shifts = {"u": 6, "g": 3, "o": 0}
    mask = sum(bits << shifts[w] for w in (who.replace("a", "ugo") or "ugo"))
    if op == "+":
        return current | mask
    if op == "-":
        return current & ~mask
    return (current & ~sum(7 << shifts[w] for w in (who.replace("a", "ugo") or "ugo"))) | mask


# --- benchmark_model -----------------------------------------------------------------------------


def _flag_value(args: list[str], name: str, default: str) -> str:
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def _g(value: float) -> str:
    """How benchmark_model prints a double: C++ stream default, 6 significant digits."""
    text = f"{value:.6g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{exponent[0]}{int(exponent[1:]):02d}"
    return text


def _stat_line(times_us: list[float]) -> str:
    ints = [int(t) for t in times_us]
    if len(ints) == 1:
        return f"count=1 curr={ints[0]} p5={ints[0]} median={ints[0]} p95={ints[0]}"
    ordered = sorted(ints)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    avg = statistics.fmean(times_us)
    std = int(math.sqrt(statistics.pvariance(ints)))
    return (
        f"count={len(ints)} first={ints[0]} curr={ints[-1]} min={ordered[0]} max={ordered[-1]} "
        f"avg={_g(avg)} std={std} p5={pick(0.05)} median={pick(0.5)} p95={pick(0.95)}"
    )


def _timed_loop(
    invoke: Callable[[], object], runs: int, min_secs: float, max_secs: float
) -> list[float]:
    times: list[float] = []
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if len(times) >= runs and elapsed >= min_secs or times and elapsed >= max_secs:
            return times
        t0 = time.perf_counter()
        invoke()
        times.append(float(int((time.perf_counter() - t0) * 1e6)))  # whole µs, as the tool keeps


class HostBenchmark:
    """`benchmark_model` for the emulated phone: LiteRT on the host, real output format."""

    def __call__(self, args: list[str], out: _Out, shell: EmulatedShell) -> int:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        log = lambda text: out.err(f"INFO: {text}\n")  # noqa: E731
        graph = _flag_value(args, "graph", "")
        threads = int(_flag_value(args, "num_threads", "-1"))
        runs = int(_flag_value(args, "num_runs", "50"))
        warmup_runs = int(_flag_value(args, "warmup_runs", "1"))
        min_secs = float(_flag_value(args, "min_secs", "1.0"))
        warmup_min_secs = float(_flag_value(args, "warmup_min_secs", "0.5"))
        max_secs = float(_flag_value(args, "max_secs", "150"))
        use_xnnpack = _flag_value(args, "use_xnnpack", "true") == "true"
        log("STARTING!")
        log("Log parameter values verbosely: [0]")
        log(f"Min num runs: [{runs}]")
        log(f"Num threads: [{threads}]")
        log(f"Min warmup runs: [{warmup_runs}]")
        log(f"Graph: [{graph}]")
        log(f"#threads used for CPU inference: [{threads}]")
        log(f"Use xnnpack: [{int(use_xnnpack)}]")
        for flag in ("use_gpu", "use_nnapi"):
            if _flag_value(args, flag, "false") == "true":
                out.err(
                    f"ERROR: {flag[4:].upper()} delegate is not available on the emulated phone "
                    "(it runs LiteRT on the host CPU).\nERROR: Benchmarking failed.\n"
                )
                return 1
        try:
            model = shell.read(graph)
        except FileError:
            out.err(f"ERROR: Could not open '{graph}'.\nERROR: Failed to mmap model {graph}\n")
            out.err("ERROR: Benchmarking failed.\n")
            return 1
        log(f"Loaded model {graph}")
        started = time.perf_counter()
        try:
            interpreter = Interpreter(
                model_content=model,
                num_threads=threads if threads > 0 else None,
                experimental_op_resolver_type=(
                    OpResolverType.AUTO
                    if use_xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                ),
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            out.err(f"ERROR: Failed to initialize the interpreter: {str(exc).splitlines()[0]}\n")
            out.err("ERROR: Benchmarking failed.\n")
            return 1
        if use_xnnpack:
            log("Created TensorFlow Lite XNNPACK delegate for CPU.")
        init_us = int((time.perf_counter() - started) * 1e6)
        rng = np.random.default_rng(0)
        for detail in interpreter.get_input_details():
            shape = tuple(int(d) for d in detail["shape"])
            interpreter.set_tensor(
                detail["index"], rng.standard_normal(shape).astype(detail["dtype"])
            )
        log(f"The input model file size (MB): {_g(len(model) / 1e6)}")
        log(f"Initialized session in {init_us / 1000:.3f}ms.")
        log(
            f"Running benchmark for at least {warmup_runs} iterations and at least "
            f"{_g(warmup_min_secs)} seconds but terminate if exceeding {_g(max_secs)} seconds."
        )
        warm = _timed_loop(interpreter.invoke, max(warmup_runs, 1), warmup_min_secs, max_secs)
        log(_stat_line(warm))
        out.err("\n")
        log(
            f"Running benchmark for at least {runs} iterations and at least {_g(min_secs)} seconds "
            f"but terminate if exceeding {_g(max_secs)} seconds."
        )
        timed = _timed_loop(interpreter.invoke, max(runs, 1), min_secs, max_secs)
        log(_stat_line(timed))
        out.err("\n")
        log(
            f"Inference timings in us: Init: {init_us}, First inference: {int(warm[0])}, "
            f"Warmup (avg): {_g(statistics.fmean(warm))}, Inference (avg): {_g(statistics.fmean(timed))}"
        )
        log(
            "Note: as the benchmark tool itself affects memory footprint, the following is only "
            "APPROXIMATE to the actual memory footprint of the model at runtime. Take the "
            "information at your discretion."
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log(f"Memory footprint delta from the start of the tool (MB): init=0 overall={_g(peak)}")
        return 0


# --- the ADB transport ---------------------------------------------------------------------------


class _Dropped(Exception):
    """The fault plan cut the cable."""


@dataclass
class _Stream:
    local_id: int
    remote_id: int
    inbox: queue.Queue = field(default_factory=queue.Queue)
    acked: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    cut: bool = False  # the fault plan pulls the cable at this stream's first answer


class _Session:
    """One host connected over TCP: handshake, then a reader loop dispatching packets to streams."""

    def __init__(self, phone: EmulatedPhone, sock: socket.socket) -> None:
        self.phone = phone
        self.sock = sock
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.max_payload = MAX_PAYLOAD
        self.alive = True

    # packets ----------------------------------------------------------------------------------

    def _recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionResetError("host closed the connection")
            data += chunk
        return bytes(data)

    def recv(self) -> Packet:
        command, arg0, arg1, length = parse_header(self._recv_exact(HEADER.size))
        return Packet(command, arg0, arg1, self._recv_exact(length) if length else b"")

    def send(self, packet: Packet) -> None:
        with self.send_lock:
            self.sock.sendall(packet.pack())

    # handshake --------------------------------------------------------------------------------

    def handshake(self) -> None:
        packet = self.recv()
        while packet.command != A_CNXN:
            packet = self.recv()
        self.max_payload = max(4096, min(MAX_PAYLOAD, packet.arg1))
        phone = self.phone
        if not (phone.authorized_keys or phone.faults.unauthorized):
            self.send(Packet(A_CNXN, A_VERSION, MAX_PAYLOAD, phone.banner()))
            return
        token = secrets.token_bytes(TOKEN_SIZE)
        self.send(Packet(A_AUTH, AUTH_TOKEN, 0, token))
        while True:
            packet = self.recv()
            if packet.command == A_CNXN:
                token = secrets.token_bytes(TOKEN_SIZE)
                self.send(Packet(A_AUTH, AUTH_TOKEN, 0, token))
            elif packet.command == A_AUTH and packet.arg0 == AUTH_SIGNATURE:
                if not phone.faults.unauthorized and any(
                    verify_token(key, token, packet.data) for key in phone.authorized_keys
                ):
                    self.send(Packet(A_CNXN, A_VERSION, MAX_PAYLOAD, phone.banner()))
                    return
                token = secrets.token_bytes(TOKEN_SIZE)
                self.send(Packet(A_AUTH, AUTH_TOKEN, 0, token))
            elif packet.command == A_AUTH and packet.arg0 == AUTH_RSAPUBLICKEY:
                phone.offered_keys.append(
                    packet.data.rstrip(b"\0").decode("ascii", "replace").strip()
                )
                # the user never taps "Allow" on an emulated phone: stay silent, as a phone does

    # streams ----------------------------------------------------------------------------------

    def serve(self) -> None:
        try:
            self.handshake()
            while True:
                packet = self.recv()
                if packet.command == A_OPEN:
                    self.open(packet)
                elif packet.command == A_OKAY:
                    stream = self.streams.get(packet.arg1)
                    if stream:
                        stream.acked.set()
                elif packet.command == A_WRTE:
                    stream = self.streams.get(packet.arg1)
                    if stream:
                        stream.inbox.put(packet.data)
                        self.send(Packet(A_OKAY, stream.local_id, stream.remote_id))
                elif packet.command == A_CLSE:
                    stream = self.streams.pop(packet.arg1, None)
                    if stream:
                        stream.closed.set()
                        stream.acked.set()
                        stream.inbox.put(None)
                        self.send(Packet(A_CLSE, stream.local_id, stream.remote_id))
                elif packet.command == A_CNXN:
                    self.send(Packet(A_CNXN, A_VERSION, MAX_PAYLOAD, self.phone.banner()))
        except (OSError, ProtocolError, struct.error, _Dropped):
            pass
        finally:
            self.alive = False
            for stream in list(self.streams.values()):
                stream.closed.set()
                stream.acked.set()
                stream.inbox.put(None)
            try:
                self.sock.close()
            except OSError:
                pass

    def open(self, packet: Packet) -> None:
        phone = self.phone
        with phone.lock:
            phone.opened += 1
            drop = phone.faults.drop_after is not None and phone.opened > phone.faults.drop_after
            if drop:
                phone.faults.drop_after = None
                phone.drops += 1
        if drop and not phone.faults.drop_mid_stream:
            self.cut()
            raise _Dropped()
        service = packet.data.rstrip(b"\0").decode("utf-8", "replace")
        name, options, argument = parse_service(service)
        handler = None
        if name == "shell" and argument and (phone.shell_v2 or "v2" not in options):
            handler = self.shell_v2 if "v2" in options else self.shell_v1
        elif name == "exec" and argument:
            handler = self.shell_v1
        elif name == "sync" and not argument:
            handler = self.sync
        if handler is None:
            self.send(Packet(A_CLSE, 0, packet.arg0))
            return
        stream = _Stream(self.next_id, packet.arg0, cut=drop)
        self.next_id += 1
        self.streams[stream.local_id] = stream
        self.send(Packet(A_OKAY, stream.local_id, stream.remote_id))
        threading.Thread(target=self._run, args=(handler, stream, argument), daemon=True).start()

    def _run(self, handler: Callable[[_Stream, str], None], stream: _Stream, argument: str) -> None:
        try:
            handler(stream, argument)
        except (OSError, _Closed):
            pass
        finally:
            self.close(stream)

    def cut(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def write(self, stream: _Stream, data: bytes) -> None:
        """WRTE in chunks, each waiting for the host's OKAY (adb's one-packet flow control)."""
        if stream.cut:
            self.cut()
            raise _Closed()
        for start in range(0, len(data), self.max_payload):
            if stream.closed.is_set() or not self.alive:
                raise _Closed()
            stream.acked.clear()
            self.send(
                Packet(
                    A_WRTE,
                    stream.local_id,
                    stream.remote_id,
                    data[start : start + self.max_payload],
                )
            )
            while not stream.acked.wait(0.5):
                if not self.alive:
                    raise _Closed()
            if stream.closed.is_set():
                raise _Closed()

    def close(self, stream: _Stream) -> None:
        if self.streams.pop(stream.local_id, None) is not None and self.alive:
            try:
                self.send(Packet(A_CLSE, stream.local_id, stream.remote_id))
            except OSError:
                pass

    def shell_v1(self, stream: _Stream, command: str) -> None:
        self.write(stream, self.phone.shell.execute_merged(command).encode())

    def shell_v2(self, stream: _Stream, command: str) -> None:
        result = self.phone.shell.execute(command)
        payload = b""
        if result.stdout:
            payload += shell_frame(SHELL_STDOUT, result.stdout.encode())
        if result.stderr:
            payload += shell_frame(SHELL_STDERR, result.stderr.encode())
        payload += shell_frame(SHELL_EXIT, bytes([result.exit_code & 0xFF]))
        self.write(stream, payload)

    def sync(self, stream: _Stream, _argument: str) -> None:
        _SyncService(self, stream).serve()


class _Closed(Exception):
    """The host closed the stream (or the connection) while the phone was still talking."""


class _SyncService:
    """The `sync:` file service over one stream (SYNC.TXT)."""

    def __init__(self, session: _Session, stream: _Stream) -> None:
        self.session = session
        self.stream = stream
        self.shell = session.phone.shell
        self.buffer = bytearray()

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.stream.inbox.get()
            if chunk is None:
                raise _Closed()
            self.buffer += chunk
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def request(self) -> tuple[bytes, int]:
        kind, length = SYNC_REQUEST.unpack(self.read(SYNC_REQUEST.size))
        return kind, length

    def reply(self, data: bytes) -> None:
        self.session.write(self.stream, data)

    def fail(self, message: str) -> None:
        self.reply(sync_request(b"FAIL", message.encode()))

    def serve(self) -> None:
        handlers = {
            b"STAT": self.stat_v1,
            b"STA2": self.stat_v2,
            b"LST2": self.stat_v2,
            b"LIST": self.list,
            b"SEND": self.send,
            b"RECV": self.recv,
        }
        while True:
            kind, length = self.request()
            if kind == b"QUIT":
                return
            if length > 4096:
                self.fail(f"path too long ({length} bytes)")
                return
            path = self.read(length).decode("utf-8", "replace")
            handler = handlers.get(kind)
            if handler is None:
                self.fail(f"unknown sync request {kind!r}")
                return
            with self.shell.lock:
                handler(kind, path)

    def stat_v1(self, _kind: bytes, path: str) -> None:
        try:
            mode, size, mtime = self.shell.stat(path)
        except FileError:
            mode = size = mtime = 0
        self.reply(STAT_V1.pack(b"STAT", mode, size & 0xFFFFFFFF, mtime))

    def stat_v2(self, kind: bytes, path: str) -> None:
        try:
            mode, size, mtime = self.shell.stat(path)
            error = 0
        except FileError as exc:
            mode = size = mtime = 0
            error = exc.errno
        self.reply(STAT_V2.pack(kind, error, 0, 0, mode, 1, 2000, 2000, size, mtime, mtime, mtime))

    def list(self, _kind: bytes, path: str) -> None:
        payload = b""
        try:
            names = self.shell.listdir(path)
        except FileError:
            names = []
        for name in names:
            try:
                mode, size, mtime = self.shell.stat(posixpath.join(path, name))
            except FileError:
                continue
            encoded = name.encode()
            payload += DENT_V1.pack(b"DENT", mode, size & 0xFFFFFFFF, mtime, len(encoded)) + encoded
        self.reply(payload + DENT_V1.pack(b"DONE", 0, 0, 0, 0))

    def send(self, _kind: bytes, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"
        data = bytearray()
        while True:
            kind, length = self.request()
            if kind == b"DATA":
                if length > SYNC_DATA_MAX:
                    self.fail(f"DATA chunk of {length} bytes exceeds {SYNC_DATA_MAX}")
                    raise _Closed()
                data += self.read(length)
            elif kind == b"DONE":
                break
            else:
                self.fail(f"unexpected {kind!r} during SEND")
                raise _Closed()
        self.session.phone.pushed.append(path)
        try:
            mode = int(mode_text) if mode_text.isdigit() else 0o644
            self.shell.write(path, bytes(data), mode)
        except FileError as exc:
            self.fail(f"couldn't create file: {exc}")
            return
        self.reply(sync_request(b"OKAY"))

    def recv(self, _kind: bytes, path: str) -> None:
        try:
            data = self.shell.read(path)
        except FileError as exc:
            self.fail(f"open failed: {exc}")
            return
        payload = b"".join(
            sync_request(b"DATA", data[i : i + SYNC_DATA_MAX])
            for i in range(0, len(data), SYNC_DATA_MAX)
        )
        self.reply(payload + sync_request(b"DONE"))


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        phone: EmulatedPhone = self.server.phone  # type: ignore[attr-defined]
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session(phone, self.request)
        with phone.lock:
            phone.sessions.add(session)
        try:
            session.serve()
        finally:
            with phone.lock:
                phone.sessions.discard(session)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EmulatedPhone:
    """The emulated phone: `with EmulatedPhone() as phone:` serves on 127.0.0.1:`phone.port`.

    `authorized_keys`: adb public keys (`adbkey.pub` text) whose signatures are accepted; with
    none (and no `unauthorized` fault) the phone does not ask for AUTH, like one on which
    "Always allow" was ticked long ago for every key. `shell_v2=False` is a pre-Android-7 phone:
    it refuses `shell,v2` services and does not advertise the feature.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        root: str | Path | None = None,
        authorized_keys: Sequence[str] = (),
        faults: Faults | None = None,
        shell_v2: bool = True,
        serial: str | None = None,
    ) -> None:
        self.requested_port = port
        self._tmp = (
            None if root is not None else tempfile.TemporaryDirectory(prefix="latkit-phone-")
        )
        self.root = Path(root) if root is not None else Path(self._tmp.name)
        self.root.mkdir(parents=True, exist_ok=True)
        self.authorized_keys = [decode_adb_public_key(k) for k in authorized_keys]
        self.faults = faults or Faults()
        self.shell_v2 = shell_v2
        self.serial = serial or f"latkit-emu-{os.getpid()}"
        self.lock = threading.RLock()
        self.sessions: set[_Session] = set()
        self.offered_keys: list[str] = []
        self.pushed: list[str] = []  # every SEND path, in order
        self.opened = 0
        self.drops = 0
        benchmark = HostBenchmark()
        self.shell = EmulatedShell(
            self.root,
            self.properties(),
            self.faults,
            lambda args, out: benchmark(args, out, self.shell),
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def properties(self) -> dict[str, str]:
        from profilers.base import host_model

        return {
            "ro.product.model": MODEL,
            "ro.product.name": "latkit_emulated",
            "ro.product.device": "emulated",
            "ro.product.manufacturer": "latkit",
            "ro.product.board": "emulated",
            "ro.board.platform": "host",
            "ro.hardware": "emulated",
            "ro.soc.manufacturer": "host",
            "ro.soc.model": host_model(),
            "ro.product.cpu.abi": ABI,
            "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
            "ro.build.version.release": "14" if self.shell_v2 else "6.0",
            "ro.build.version.sdk": "34" if self.shell_v2 else "23",
            "ro.build.fingerprint": "latkit/emulated/emulated:14/LATKIT/1:user/release-keys",
            "ro.serialno": self.serial,
            "ro.latkit.emulated": "1",
        }

    def banner(self) -> bytes:
        props = self.shell.props
        features = "shell_v2,cmd,stat_v2,fixed_push_mkdir" if self.shell_v2 else "cmd"
        return (
            f"device::ro.product.name={props['ro.product.name']};"
            f"ro.product.model={props['ro.product.model']};"
            f"ro.product.device={props['ro.product.device']};features={features}"
        ).encode()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulated phone is not started")
        return self._server.server_address[1]

    @property
    def commands(self) -> list[str]:
        """Every shell command line the phone received, in order."""
        return self.shell.commands

    def start(self) -> EmulatedPhone:
        """Listen on loopback (never another interface) and serve in a background thread."""
        self._server = _Server(("127.0.0.1", self.requested_port), _Handler)
        self._server.phone = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Foreground serving for `latkit emulate-phone`; Ctrl-C stops it."""
        self._server = _Server(("127.0.0.1", self.requested_port), _Handler)
        self._server.phone = self  # type: ignore[attr-defined]
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def disconnect_all(self) -> None:
        """Cut every live connection, as pulling the cable does."""
        with self.lock:
            sessions = list(self.sessions)
        for session in sessions:
            try:
                session.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            self.disconnect_all()
            self._server.server_close()
            self._server = None
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmulatedPhone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
