"""An emulated Android phone: a loopback TCP server that speaks the real ADB wire protocol.

A tool for tests, CI and people without a phone, not part of any profiler: `adb connect`,
adb-shell's `AdbDeviceTcp` and latkit's profiler all talk to it as to a phone on wireless
debugging. One module per layer: `transport` (ADB packets and streams), `sync` (file service),
`shell` (command language), `system` (files, /sys, coreutils), `benchmark` (host
benchmark_model), `server` (the phone).

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

from latkit.emulator.server import MODEL, EmulatedPhone
from latkit.emulator.shell import ShellSyntaxError, parse_command_line
from latkit.emulator.system import ABI, Faults

__all__ = ["ABI", "MODEL", "EmulatedPhone", "Faults", "ShellSyntaxError", "parse_command_line"]
