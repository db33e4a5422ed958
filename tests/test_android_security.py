"""Nothing a device file, an op or a serial contains becomes shell syntax on the phone, and
nothing is written or deleted outside remote_dir.

The emulated phone's shell honours `;`, `&&`, `||` and `$?`, so an unquoted `; touch pwned` *would*
create the file there: these tests can fail.
"""

from __future__ import annotations

import posixpath

import pytest
from android_support import phone_file, private_adb_server

from latkit.devices import load_device, parse_device
from latkit.emulator import EmulatedPhone, parse_command_line
from latkit.errors import DeviceFileError, LatkitError
from latkit.profilers import ProfilerOptions, get_profiler
from latkit.profilers.android.connection import AdbError, AdbServer, AdbServerConnection
from latkit.profilers.android.device import Phone
from latkit.profilers.android.protocol import command_line
from latkit.profilers.session import profile_ops
from latkit.spaces import load_space
from latkit.store import MeasurementStore

OPS = load_space("proxyless-tiny").distinct_ops()[:2]
HOSTILE = [
    "a; touch /data/local/tmp/pwned",
    "a && touch /data/local/tmp/pwned",
    "$(touch /data/local/tmp/pwned)",
    "`touch /data/local/tmp/pwned`",
    "a'; touch /data/local/tmp/pwned; echo '",
    'a"; touch /data/local/tmp/pwned; echo "',
    "a\ntouch /data/local/tmp/pwned",
    "a | touch /data/local/tmp/pwned",
    "-rf /",
]


def pwned(phone: EmulatedPhone) -> list[str]:
    """Files an injected `touch` made (a hostile remote_dir legitimately makes odd folders)."""
    return [p.name for p in phone.root.rglob("pwned*") if p.is_file()]


def assert_one_command_each(phone: EmulatedPhone) -> None:
    """Every line the profiler sent parses to exactly one command: no `;`, `&&` or `||` of ours."""
    for line in phone.commands:
        line = line.removesuffix("; echo :latkit-exit:$?")
        assert len(parse_command_line(line)) == 1, line


@pytest.mark.parametrize("word", HOSTILE)
def test_quoted_words_reach_the_phone_as_one_argument(word):
    with EmulatedPhone() as phone:
        result = phone.shell.execute(command_line("echo", word))
        assert result.stdout == word + "\n" and result.exit_code == 0
        assert pwned(phone) == []


@pytest.mark.parametrize(
    "template, word",
    [
        ("echo {}", HOSTILE[0]),
        ("echo {}", HOSTILE[1]),
        ("echo {}", HOSTILE[6]),
        ("echo '{}'", HOSTILE[4]),
        ('echo "{}"', HOSTILE[5]),
    ],
)
def test_the_control_really_injects_when_quoted_naively(template, word):
    with EmulatedPhone() as phone:
        phone.shell.execute(template.format(word))
        assert pwned(phone) == ["pwned"]


def test_a_hostile_remote_dir_and_binary_name_are_quoted_end_to_end(tmp_path):
    hostile_dir = "/data/local/tmp/lat kit; touch /data/local/tmp/pwned1 && echo $? `id`"
    binary = tmp_path / "bm; touch pwned2 $(id)"
    binary.write_bytes(b"#!/system/bin/sh\n")
    with EmulatedPhone() as phone:
        device = phone_file(
            tmp_path / "h.yaml", phone.port, remote_dir=hostile_dir, benchmark_model=str(binary)
        )
        with MeasurementStore(tmp_path / "s.sqlite") as store:
            profiler = get_profiler(load_device(device), ProfilerOptions(raw_dir=tmp_path / "raw"))
            try:
                summary = profile_ops(profiler, OPS, store)
            finally:
                profiler.close()
        assert summary.measured == len(OPS)
        assert pwned(phone) == [] and not list(tmp_path.glob("pwned*"))
        assert_one_command_each(phone)
        # the weird folder exists, verbatim, and the run happened inside it
        assert (phone.root / hostile_dir.lstrip("/")).is_dir()
        runs = [c for c in phone.commands if "--graph=" in c]
        assert runs and all(command_line(hostile_dir + "/benchmark_model") in c for c in runs)
        # every write and delete stayed inside remote_dir
        assert all(posixpath.dirname(p) == hostile_dir for p in phone.pushed)
        removals = [parse_command_line(c)[0][1] for c in phone.commands if c.startswith("rm ")]
        for words in removals:
            for word in words[2:]:
                assert posixpath.dirname("".join(map(str, word))) == hostile_dir


def test_phone_file_names_cannot_leave_remote_dir():
    phone = Phone(connection=None, remote_dir="/data/local/tmp/latkit")  # type: ignore[arg-type]
    assert phone.remote_path("op-1.tflite") == "/data/local/tmp/latkit/op-1.tflite"
    for name in ("../x", "a/b", "..", ".", "", "x;y", "$(id)", "a b"):
        with pytest.raises(LatkitError, match="refusing phone file name"):
            phone.remote_path(name)


@pytest.mark.parametrize(
    "remote_dir",
    ["/data/local/tmp/../../system/bin", "/system/bin", "relative/dir", "/sdcardx", "/"],
)
def test_remote_dir_outside_the_safe_roots_is_refused(remote_dir):
    with pytest.raises(DeviceFileError, match="must be inside /data/local/tmp or /sdcard"):
        parse_device(
            {
                "name": "p",
                "kind": "android",
                "runtime": "litert",
                "android": {"remote_dir": remote_dir},
            },
            "p.yaml",
        )


@pytest.mark.parametrize("field, value", [("name", "p; rm -rf /"), ("cpu_affinity", "f0; id")])
def test_device_file_fields_that_reach_the_shell_are_validated(field, value):
    data = {"name": "p", "kind": "android", "runtime": "litert", "android": {}}
    if field == "name":
        data["name"] = value
    else:
        data["android"][field] = value
    with pytest.raises(DeviceFileError):
        parse_device(data, "p.yaml")


def test_a_hostile_serial_is_one_length_prefixed_request(tmp_path):
    """Smart-socket requests are length-prefixed: a serial cannot smuggle a second request."""
    with private_adb_server(tmp_path / "home") as server, EmulatedPhone() as phone:
        server.adb("connect", f"127.0.0.1:{phone.port}")
        for serial in ("x;shell:touch /data/local/tmp/pwned", "0004host:kill\n"):
            with pytest.raises(AdbError):  # refused by the server, whatever its wording
                AdbServerConnection(AdbServer(server.address), serial)
        assert server.adb("devices").returncode == 0  # the server was not killed
        assert pwned(phone) == [] and phone.commands == []
