"""The emulated phone, proven faithful by two clients nobody here wrote: Debian's `adb` and
adb-shell. Plus its shell, its sandbox and its benchmark_model."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from android_support import ROOT, free_port, private_adb_server

from latkit.emulator import (
    EmulatedPhone,
    Faults,
    ShellSyntaxError,
    parse_command_line,
)
from latkit.ops import OpSpec
from latkit.profilers.android.parser import parse_benchmark_output
from latkit.profilers.android.protocol import ShellV2Decoder
from latkit.profilers.tflite_writer import export_tflite

OP = OpSpec("mbconv", 16, 16, 24, stride=2, kernel=3, expand=3.0)


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory):
    with private_adb_server(tmp_path_factory.mktemp("adb-home")) as server:
        yield server


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    """An adb key pair made by adb-shell's own keygen."""
    path = tmp_path_factory.mktemp("keys") / "adbkey"
    keygen(str(path))
    return path


def client(phone: EmulatedPhone, signer=None, auth_timeout_s: float = 5.0) -> AdbDeviceTcp:
    device = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=5)
    device.connect(rsa_keys=[signer] if signer else None, auth_timeout_s=auth_timeout_s)
    return device


def shell_v2(device: AdbDeviceTcp, command: str):
    decoder = ShellV2Decoder()
    decoder.feed(device._service(b"shell,v2,raw", command.encode(), decode=False))
    return decoder.result()


# --- Debian's adb ------------------------------------------------------------------------------


def test_adb_connects_runs_shell_with_exit_status_and_pushes_and_pulls(adb_server, tmp_path):
    with EmulatedPhone() as phone:
        serial = f"127.0.0.1:{phone.port}"
        connected = adb_server.adb("connect", serial)
        assert f"connected to {serial}" in connected.stdout
        listing = adb_server.adb("devices", "-l").stdout
        assert serial in listing and "device" in listing and "Emulated_Phone" in listing

        model = adb_server.adb("-s", serial, "shell", "getprop", "ro.product.model")
        assert (model.returncode, model.stdout) == (0, "Emulated Phone (host CPU)\n")
        failed = adb_server.adb("-s", serial, "shell", "cat /nope; exit_code_test")
        assert failed.returncode == 127  # shell v2 carries the exit status back through adb
        assert "cat: /nope: No such file or directory" in failed.stderr
        assert "exit_code_test: not found" in failed.stderr

        payload = os.urandom(300_000) + b"\0\r\n\xff"  # > one sync DATA chunk, binary bytes
        local = tmp_path / "blob.bin"
        local.write_bytes(payload)
        pushed = adb_server.adb("-s", serial, "push", str(local), "/data/local/tmp/x/blob.bin")
        assert pushed.returncode == 0, pushed.stderr
        back = tmp_path / "back.bin"
        pulled = adb_server.adb("-s", serial, "pull", "/data/local/tmp/x/blob.bin", str(back))
        assert pulled.returncode == 0, pulled.stderr
        assert back.read_bytes() == payload
        assert (phone.root / "data/local/tmp/x/blob.bin").read_bytes() == payload
        adb_server.adb("disconnect", serial)


def test_adb_authenticates_with_its_own_key_and_a_stranger_stays_unauthorized(adb_server):
    adb_public_key = (adb_server.home / ".android" / "adbkey.pub").read_text()
    with EmulatedPhone(authorized_keys=[adb_public_key]) as phone:
        serial = f"127.0.0.1:{phone.port}"
        adb_server.adb("connect", serial)
        assert adb_server.adb("-s", serial, "shell", "echo", "signed").stdout == "signed\n"
        adb_server.adb("disconnect", serial)
    with EmulatedPhone(faults=Faults(unauthorized=True)) as phone:
        serial = f"127.0.0.1:{phone.port}"
        adb_server.adb("connect", serial)
        state = ""
        for _ in range(50):  # adb marks the device once its public key went unanswered
            state = adb_server.adb("devices").stdout
            if f"{serial}\tunauthorized" in state:
                break
            time.sleep(0.05)
        assert f"{serial}\tunauthorized" in state
        refused = adb_server.adb("-s", serial, "shell", "echo", "x")
        assert refused.returncode != 0 and "unauthorized" in refused.stderr
        assert phone.offered_keys and phone.offered_keys[0].split()[0] in adb_public_key
        adb_server.adb("disconnect", serial)


def test_adb_falls_back_to_shell_v1_on_an_old_phone(adb_server):
    with EmulatedPhone(shell_v2=False) as phone:
        serial = f"127.0.0.1:{phone.port}"
        adb_server.adb("connect", serial)
        result = adb_server.adb("-s", serial, "shell", "echo v1; nothere")
        assert result.stdout == "v1\nsh: nothere: not found\n"  # v1 merges streams, no status
        assert phone.commands == ["echo v1; nothere"]
        adb_server.adb("disconnect", serial)


# --- adb-shell ---------------------------------------------------------------------------------


def test_adb_shell_signs_in_with_rsa_and_uses_shell_and_sync(key):
    signer = PythonRSASigner.FromRSAKeyPath(str(key))
    public = (key.parent / "adbkey.pub").read_text()
    with EmulatedPhone(authorized_keys=[public]) as phone:
        device = client(phone, signer)
        assert device.shell("getprop ro.product.cpu.abi") == "arm64-v8a\n"
        result = shell_v2(device, "echo out; cat /missing")
        assert (result.stdout, result.exit_code) == ("out\n", 1)
        assert result.stderr == "cat: /missing: No such file or directory\n"

        model = export_tflite([OP])
        device.push(io.BytesIO(model), "/data/local/tmp/latkit/op.tflite")
        buffer = io.BytesIO()
        device.pull("/data/local/tmp/latkit/op.tflite", buffer)
        assert buffer.getvalue() == model
        mode, size, _mtime = device.stat("/data/local/tmp/latkit/op.tflite")
        assert size == len(model) and mode & 0o100000
        names = {bytes(f.filename) for f in device.list("/data/local/tmp/latkit")}
        assert b"op.tflite" in names
        device.close()


def test_a_wrong_key_is_never_accepted(key, tmp_path):
    other = tmp_path / "otherkey"
    keygen(str(other))
    public = (key.parent / "adbkey.pub").read_text()
    with EmulatedPhone(authorized_keys=[public]) as phone:
        with pytest.raises(Exception) as caught:
            client(phone, PythonRSASigner.FromRSAKeyPath(str(other)), auth_timeout_s=0.5)
        assert "AUTH" in repr(caught.value) or "timed out" in str(caught.value)
        assert phone.offered_keys == [(other.parent / "otherkey.pub").read_text().strip()]
        with pytest.raises(Exception, match="authentication required"):
            client(phone, None)


def test_the_connection_drops_at_the_planned_service(key):
    with EmulatedPhone(faults=Faults(drop_after=2)) as phone:
        device = client(phone)
        assert device.shell("echo 1") == "1\n"
        assert device.shell("echo 2") == "2\n"
        with pytest.raises(Exception):  # noqa: B017 - adb-shell raises whatever its read hits
            device.shell("echo 3", read_timeout_s=1)
        assert phone.drops == 1
        again = client(phone)  # one-shot, like a replugged cable
        assert again.shell("echo 4") == "4\n"


# --- the shell and its sandbox -----------------------------------------------------------------


@pytest.fixture
def phone():
    with EmulatedPhone() as p:
        yield p


def test_shell_language(phone):
    sh = phone.shell.execute
    assert sh("foo").exit_code == 127 and sh("foo").stderr == "sh: foo: not found\n"
    assert sh("false; echo $?").stdout == "1\n"
    assert sh("false && echo no || echo yes").stdout == "yes\n"
    assert sh("echo 'a;b' \"c d\" e\\;f").stdout == "a;b c d e;f\n"
    assert sh('echo "status $?"').stdout == "status 0\n"
    assert sh("echo a | cat").exit_code == 2  # pipes: refused, never half-interpreted
    assert sh("echo $(id)").exit_code == 2 and sh("echo `id`").exit_code == 2
    with pytest.raises(ShellSyntaxError):
        parse_command_line("echo 'unterminated")
    assert [len(words) for _, words in parse_command_line("a b; c && d")] == [2, 1, 1]


def test_sandbox_confines_writes_and_sdcard_is_noexec(phone):
    sh = phone.shell.execute
    assert sh("mkdir -p /data/local/tmp/a/b").exit_code == 0
    assert (phone.root / "data/local/tmp/a/b").is_dir()
    assert "Read-only file system" in sh("touch /system/evil").stderr
    assert "Read-only file system" in sh("touch /data/local/tmp/../../../etc/evil").stderr
    assert sh("rm -rf /data/local/tmp").exit_code == 1  # the root of the sandbox stays
    outside = phone.root.parent / "evil"
    assert not outside.exists()
    assert sh("touch /sdcard/x && chmod 755 /sdcard/x").exit_code == 0
    ran = sh("/sdcard/x")
    assert ran.exit_code == 126 and "Permission denied" in ran.stderr
    assert sh("/data/local/tmp/none").exit_code == 127


def test_sys_files_taskset_and_hashes(phone):
    sh = phone.shell.execute
    assert sh("cat /sys/devices/system/cpu/possible").stdout == "0-7\n"
    assert sh("cat /sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq").stdout == "2841600\n"
    assert "thermal_zone0" in sh("ls /sys/class/thermal").stdout.split()
    assert sh("taskset 0 echo x").exit_code == 1
    assert sh("taskset f0 echo x").stdout == "x\n"
    assert sh("echo x > /data/local/tmp/r").exit_code == 2  # redirection: refused
    assert not (phone.root / "data/local/tmp/r").exists()
    phone.shell.write("/data/local/tmp/h", b"abc", 0o644)
    assert sh("sha256sum /data/local/tmp/h").stdout.startswith(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  "
    )
    assert "temperature: 350" in sh("dumpsys battery").stdout


def test_temperature_schedule_rises_and_falls():
    with EmulatedPhone(faults=Faults(temperatures=(40, 52, 47, 38))) as phone:
        read = lambda: phone.shell.execute("cat /sys/class/thermal/thermal_zone0/temp").stdout  # noqa: E731
        assert [read() for _ in range(5)] == ["40000\n", "52000\n", "47000\n", "38000\n", "38000\n"]


def test_benchmark_model_runs_litert_and_prints_the_current_format(phone):
    model = export_tflite([OP])
    phone.shell.write("/data/local/tmp/latkit/op.tflite", model, 0o644)
    phone.shell.write("/data/local/tmp/latkit/benchmark_model", b"#!/system/bin/sh\n", 0o755)
    result = phone.shell.execute(
        "taskset f0 /data/local/tmp/latkit/benchmark_model --graph=/data/local/tmp/latkit/op.tflite"
        " --num_threads=1 --num_runs=7 --warmup_runs=2 --min_secs=0 --warmup_min_secs=0"
    )
    assert result.exit_code == 0, result.stderr
    assert "INFO: Inference timings in us: Init: " in result.stderr
    parsed = parse_benchmark_output(result.output, expected_runs=7)
    assert parsed.generation == "current" and parsed.inference.count == 7
    assert parsed.warmup is not None and parsed.warmup.count == 2
    assert 0 < parsed.inference.min_us <= parsed.median_us <= parsed.inference.max_us

    missing = phone.shell.execute("/data/local/tmp/latkit/benchmark_model --graph=/nope.tflite")
    assert missing.exit_code == 1 and "Could not open" in missing.stderr
    gpu = phone.shell.execute(
        "/data/local/tmp/latkit/benchmark_model --graph=/data/local/tmp/latkit/op.tflite --use_gpu=true"
    )
    assert gpu.exit_code == 1 and "GPU delegate is not available" in gpu.stderr
    x86 = b"\x7fELF\x02\x01\x01" + bytes(11) + (62).to_bytes(2, "little") + bytes(40)
    phone.shell.write("/data/local/tmp/latkit/benchmark_model", x86, 0o755)
    wrong = phone.shell.execute("/data/local/tmp/latkit/benchmark_model --graph=x")
    assert wrong.exit_code == 126 and "Exec format error" in wrong.stderr


def test_latkit_emulate_phone_serves_in_the_foreground_with_its_faults(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from latkit.cli import main; main()",
            "emulate-phone",
            "--port",
            str(port),
            "--temperatures",
            "52,38",
            "--no-shell-v2",
            "--root",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.1)
        device = AdbDeviceTcp("127.0.0.1", port, default_transport_timeout_s=5)
        device.connect(rsa_keys=None)
        assert device.shell("getprop ro.build.version.sdk") == "23\n"  # --no-shell-v2: Android 6
        temp = "cat /sys/class/thermal/thermal_zone0/temp"
        assert [device.shell(temp), device.shell(temp)] == ["52000\n", "38000\n"]
        device.shell("touch /data/local/tmp/made-here")
        assert (tmp_path / "data/local/tmp/made-here").exists()  # --root is the sandbox
        device.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "host-CPU numbers" in process.stdout.read()
