"""The emulated phone's files and commands: a sandbox folder that holds `/data/local/tmp` and
`/sdcard` (noexec), a simulated `/sys` (thermal zones, cpufreq), and the coreutils latkit uses."""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from latkit.emulator.shell import Output, ShellSyntaxError, expand, parse_command_line
from latkit.profilers.android.device import ABI_MACHINES, ELF_MACHINES, elf_machine
from latkit.profilers.android.protocol import (
    ShellResult,
)

ABI = "arm64-v8a"
WRITABLE_ROOTS = ("/data/local/tmp", "/sdcard")
NOEXEC_ROOTS = ("/sdcard",)
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
        runner: Callable[[list[str], Output], int],
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
        self.builtins: dict[str, Callable[[list[str], Output], int]] = {
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

    def _interpret(self, line: str) -> tuple[Output, int]:
        self.commands.append(line)
        out = Output()
        try:
            commands = parse_command_line(line)
        except ShellSyntaxError as exc:
            out.err(f"sh: {exc}\n")
            return out, 2
        status = 0
        for connector, words in commands:
            if (connector == "&&" and status != 0) or (connector == "||" and status == 0):
                continue
            status = self.run([expand(w, status) for w in words], out)
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

    def run(self, argv: list[str], out: Output) -> int:
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

    def _exec(self, argv: list[str], out: Output) -> int:
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

    def _cat(self, argv: list[str], out: Output) -> int:
        status = 0
        for path in argv[1:]:
            try:
                out.out(self.read(path).decode("utf-8", "replace"))
            except FileError as exc:
                out.err(f"cat: {exc}\n")
                status = 1
        return status

    def _echo(self, argv: list[str], out: Output) -> int:
        newline = not (len(argv) > 1 and argv[1] == "-n")
        words = argv[2:] if not newline else argv[1:]
        out.out(" ".join(words) + ("\n" if newline else ""))
        return 0

    def _getprop(self, argv: list[str], out: Output) -> int:
        if len(argv) > 1:
            out.out(self.props.get(argv[1], argv[2] if len(argv) > 2 else "") + "\n")
        else:
            out.out("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())))
        return 0

    def _dumpsys(self, argv: list[str], out: Output) -> int:
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

    def _ls(self, argv: list[str], out: Output) -> int:
        _options, paths = self._paths(argv, "1aA")
        status = 0
        for path in paths or ["/"]:
            try:
                out.out("".join(f"{name}\n" for name in self.listdir(path)))
            except FileError as exc:
                out.err(f"ls: {exc}\n")
                status = 1
        return status

    def _mkdir(self, argv: list[str], out: Output) -> int:
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

    def _rm(self, argv: list[str], out: Output) -> int:
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

    def _chmod(self, argv: list[str], out: Output) -> int:
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

    def _sha256sum(self, argv: list[str], out: Output) -> int:
        status = 0
        for path in argv[1:]:
            try:
                out.out(f"{hashlib.sha256(self.read(path)).hexdigest()}  {path}\n")
            except FileError as exc:
                out.err(f"sha256sum: {exc}\n")
                status = 1
        return status

    def _taskset(self, argv: list[str], out: Output) -> int:
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

    def _touch(self, argv: list[str], out: Output) -> int:
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
