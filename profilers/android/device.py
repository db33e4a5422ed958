"""What latkit reads from and does on a phone: its facts, its temperature, files in `remote_dir`.

Every write or delete goes through `Phone.remote_path`, which accepts plain file names only, so
nothing can land outside `remote_dir` (itself validated to sit in /data/local/tmp or /sdcard).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import struct
from dataclasses import dataclass, field

from latkit.errors import LatkitError
from latkit.profilers.android.connection import Connection
from latkit.profilers.android.protocol import ShellResult

THERMAL = "/sys/class/thermal"
CPUFREQ = "/sys/devices/system/cpu/cpu{cpu}/cpufreq/{name}"
#: thermal zone types that measure the SoC / CPU (not the battery, skin, modem, ...)
SOC_ZONE = re.compile(r"cpu|soc|tsens|mtktscpu|cluster|big|little|apc|core", re.IGNORECASE)
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64"}
ABI_MACHINES = {"arm64-v8a": 183, "armeabi-v7a": 40, "armeabi": 40, "x86_64": 62, "x86": 3}
PROPS = re.compile(r"^\[([^\]]*)\]: \[(.*)\]$")


@dataclass(frozen=True)
class CpuClock:
    cpu: int
    max_khz: int | None
    cur_khz: int | None
    governor: str


@dataclass(frozen=True)
class PhoneFacts:
    """getprop facts and clocks, read once per session."""

    serial: str
    model: str
    board: str
    soc: str
    android: str
    sdk: str
    abi: str
    emulated: bool
    cpus: tuple[CpuClock, ...] = ()
    props: dict[str, str] = field(default_factory=dict, compare=False)


def parse_getprop(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in map(PROPS.match, text.splitlines()) if m}


def parse_cpu_list(text: str) -> list[int]:
    """`0-3,6` -> [0, 1, 2, 3, 6] (the format of /sys/devices/system/cpu/possible)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def elf_machine(data: bytes) -> str | None:
    """The architecture an ELF binary is built for, or None for anything that is not ELF."""
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return None
    machine = struct.unpack_from("<H" if data[5] == 1 else ">H", data, 18)[0]
    return ELF_MACHINES.get(machine, f"machine {machine}")


class Phone:
    """A connected phone and the folder latkit may use on it."""

    def __init__(self, connection: Connection, remote_dir: str) -> None:
        self.connection = connection
        self.remote_dir = posixpath.normpath(remote_dir)
        self._zones: list[str] | None = None

    # --- commands -----------------------------------------------------------------------------

    def run(self, *argv: str, timeout_s: float = 60.0) -> ShellResult:
        return self.connection.shell(argv, timeout_s=timeout_s)

    def remote_path(self, name: str) -> str:
        """`remote_dir/name` for a plain file name; anything with a slash or `..` is refused."""
        if not SAFE_NAME.match(name) or name in (".", ".."):
            raise LatkitError(f"refusing phone file name {name!r}: only [A-Za-z0-9._-] are used")
        return posixpath.join(self.remote_dir, name)

    def prepare_dir(self) -> None:
        result = self.run("mkdir", "-p", self.remote_dir)
        if result.exit_code not in (0, None):
            raise LatkitError(
                f"cannot create android.remote_dir {self.remote_dir} on the phone: "
                f"{result.output.strip()}; use a folder under /data/local/tmp"
            )

    def push(self, name: str, data: bytes, mode: int = 0o644) -> str:
        remote = self.remote_path(name)
        self.connection.push(data, remote, mode)
        return remote

    def remove(self, *names: str) -> None:
        if names:
            self.run("rm", "-f", *(self.remote_path(n) for n in names))

    def chmod(self, name: str, mode: str = "755") -> ShellResult:
        return self.run("chmod", mode, self.remote_path(name))

    def sha256(self, name: str) -> str | None:
        """The file's sha256 on the phone, or None when it is missing (or sha256sum is)."""
        result = self.run("sha256sum", self.remote_path(name))
        digest = result.stdout.split()[0] if result.stdout.split() else ""
        if result.exit_code not in (0, None) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return None
        return digest

    def up_to_date(self, name: str, data: bytes) -> bool:
        return self.sha256(name) == hashlib.sha256(data).hexdigest()

    # --- facts --------------------------------------------------------------------------------

    def read(self, path: str) -> str | None:
        result = self.run("cat", path)
        return result.stdout if result.exit_code in (0, None) and result.stdout else None

    def facts(self) -> PhoneFacts:
        props = parse_getprop(self.run("getprop").stdout)
        soc = (
            " ".join(v for v in (props.get("ro.soc.manufacturer"), props.get("ro.soc.model")) if v)
            or props.get("ro.board.platform")
            or props.get("ro.hardware", "")
        )
        cpus = parse_cpu_list(self.read("/sys/devices/system/cpu/possible") or "")
        return PhoneFacts(
            serial=props.get("ro.serialno", "") or self.connection.serial,
            model=props.get("ro.product.model", ""),
            board=props.get("ro.product.board", "") or props.get("ro.board.platform", ""),
            soc=soc,
            android=props.get("ro.build.version.release", ""),
            sdk=props.get("ro.build.version.sdk", ""),
            abi=props.get("ro.product.cpu.abi", ""),
            emulated=props.get("ro.latkit.emulated") == "1",
            cpus=tuple(self.clock(cpu) for cpu in cpus),
            props=props,
        )

    def clock(self, cpu: int) -> CpuClock:
        """Max and current frequency and governor of one core, in one command."""
        names = ("cpuinfo_max_freq", "scaling_cur_freq", "scaling_governor")
        result = self.run("cat", *(CPUFREQ.format(cpu=cpu, name=n) for n in names))
        lines = result.stdout.split()
        if result.exit_code not in (0, None) or len(lines) != 3:
            return CpuClock(cpu, None, None, "")
        max_khz, cur_khz, governor = lines
        return CpuClock(
            cpu,
            int(max_khz) if max_khz.isdigit() else None,
            int(cur_khz) if cur_khz.isdigit() else None,
            governor,
        )

    def thermal_zones(self) -> list[str]:
        """The temp files of the SoC/CPU zones (all readable zones if none is named so)."""
        if self._zones is None:
            listing = self.run("ls", THERMAL)
            zones = [z for z in listing.stdout.split() if z.startswith("thermal_zone")]
            named: list[str] = []
            readable: list[str] = []
            for zone in zones:
                kind = self.read(f"{THERMAL}/{zone}/type")
                if kind is None:
                    continue
                readable.append(f"{THERMAL}/{zone}/temp")
                if SOC_ZONE.search(kind):
                    named.append(f"{THERMAL}/{zone}/temp")
            self._zones = named or readable
        return self._zones

    def temperature(self) -> float | None:
        """°C of the hottest SoC zone, else the battery from `dumpsys battery`, else None."""
        zones = self.thermal_zones()
        if zones:
            result = self.run("cat", *zones)
            values = [_celsius(v) for v in result.stdout.split() if _is_number(v)]
            values = [v for v in values if v is not None]
            if values:
                return max(values)
        battery = self.run("dumpsys", "battery")
        match = re.search(r"^\s*temperature:\s*(-?\d+)", battery.stdout, re.MULTILINE)
        return int(match.group(1)) / 10 if match else None


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"-?\d+", text))


def _celsius(raw: str) -> float | None:
    """Zones report millidegrees on most kernels, whole or tenth degrees on a few."""
    value = int(raw)
    if value > 1000:
        value_c = value / 1000
    elif value > 200:
        value_c = value / 10
    else:
        value_c = float(value)
    return value_c if -40 <= value_c <= 150 else None
