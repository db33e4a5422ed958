"""The Android profiler end to end against the emulated phone over real TCP: tcp and adb-server
transports, throttling, dropped connections with resume, and every failure's one-line message."""

from __future__ import annotations

import io
import random
import sqlite3
import subprocess
import sys

import pytest
from adb_shell.auth.keygen import keygen
from android_support import ROOT, WritingReporter, free_port, phone_file, private_adb_server
from typer.testing import CliRunner

from latkit.cli import app
from latkit.devices import load_device
from latkit.emulator import EmulatedPhone, Faults
from latkit.errors import LatkitError
from latkit.profilers import ProfilerOptions, get_profiler
from latkit.profilers.android.connection import AdbError, ConnectionLost
from latkit.profilers.android.parser import BenchmarkParseError
from latkit.profilers.android.profiler import EMULATED_LABEL, AndroidProfiler
from latkit.profilers.session import profile_ops
from latkit.spaces import load_space
from latkit.store import MeasurementStore

TINY = load_space("proxyless-tiny")
OPS = TINY.distinct_ops()


@pytest.fixture
def phone():
    with EmulatedPhone() as p:
        yield p


def make_profiler(path, keep_files=False, **fields) -> tuple[AndroidProfiler, io.StringIO]:
    out = io.StringIO()
    options = ProfilerOptions(
        reporter=WritingReporter(out), keep_files=keep_files, raw_dir=path.parent / "raw"
    )
    profiler = get_profiler(load_device(path), options)
    assert isinstance(profiler, AndroidProfiler)
    profiler.poll_s = 0.01
    profiler.auth_timeout_s = 0.5
    for name, value in fields.items():
        setattr(profiler, name, value)
    return profiler, out


def profile(path, ops, store, **fields):
    profiler, out = make_profiler(path, **fields)
    try:
        return profile_ops(profiler, ops, store), out.getvalue()
    finally:
        profiler.close()


def remote_files(phone: EmulatedPhone) -> list[str]:
    return sorted(p.name for p in (phone.root / "data/local/tmp/latkit").iterdir())


def test_full_small_profile_over_tcp(phone, tmp_path):
    device = phone_file(tmp_path / "emu.yaml", phone.port)
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        summary, _ = profile(device, OPS, store)
        frame = store.dataframe("emu")
    assert (summary.measured, summary.skipped, summary.label) == (len(OPS), 0, EMULATED_LABEL)
    assert sorted(frame.key) == sorted(op.key for op in OPS)
    row = frame.iloc[0]
    assert row.device_model == "Emulated Phone (host CPU)" and row.host.startswith("host ")
    assert row.runtime == "litert" and row.runtime_version.startswith("benchmark_model sha256:")
    assert '"emulated": true' in row.env_json and '"affinity": "f0"' in row.env_json
    assert (frame.runs == 2 * 3).all() and (frame.temperature_c == 35.0).all()
    assert ((frame.min_ms <= frame.median_ms) & (frame.median_ms <= frame.max_ms)).all()
    # benchmark_model counts whole microseconds: only the sub-µs logits may read 0
    assert (frame[frame.key.str.startswith("expanded_conv")].median_ms > 0).all()
    assert summary.timed_s > 0
    # run as the device file says, one quoted command per op and round
    runs = [c for c in phone.commands if "benchmark_model --graph=" in c]
    assert len(runs) == 2 * len(OPS)
    assert all(c.startswith("taskset f0 /data/local/tmp/latkit/benchmark_model") for c in runs)
    assert all("--num_runs=3 --warmup_runs=1" in c and "--use_xnnpack=true" in c for c in runs)
    # pushed in batches, cleaned up at the end
    assert phone.pushed.count("/data/local/tmp/latkit/benchmark_model") == 1
    assert remote_files(phone) == []


def test_benchmark_model_is_pushed_again_only_when_it_changed(phone, tmp_path):
    device = phone_file(tmp_path / "emu.yaml", phone.port)
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        profile(device, OPS[:2], store, keep_files=True)
        assert "benchmark_model" in remote_files(phone) and len(remote_files(phone)) == 3
        summary, _ = profile(device, OPS[:3], store, keep_files=True)  # resumes: 1 op to do
        assert (summary.measured, summary.skipped) == (1, 2)
        assert phone.pushed.count("/data/local/tmp/latkit/benchmark_model") == 1  # sha256 matched
        changed = tmp_path / "benchmark_model"
        changed.write_bytes(b"#!/system/bin/sh\n# a newer build\n")
        other = phone_file(tmp_path / "emu2.yaml", phone.port, benchmark_model=str(changed))
        profile(other, OPS[:1], store)
    assert phone.pushed.count("/data/local/tmp/latkit/benchmark_model") == 2
    assert remote_files(phone) == sorted(  # the kept files of the first sessions stay
        n for n in remote_files(phone) if n.startswith("op-")
    )


def test_full_small_profile_through_an_adb_server(tmp_path):
    with private_adb_server(tmp_path / "home") as server, EmulatedPhone() as phone:
        serial = f"127.0.0.1:{phone.port}"
        assert "connected" in server.adb("connect", serial).stdout
        device = phone_file(
            tmp_path / "srv.yaml",
            phone.port,
            name="via-server",
            transport="adb-server",
            adb_server=server.address,
            serial=serial,
        )
        with MeasurementStore(tmp_path / "s.sqlite") as store:
            summary, _ = profile(device, OPS[:6], store)
            frame = store.dataframe("via-server")
        assert summary.measured == 6 and len(frame) == 6
        assert '"transport": "adb-server"' in frame.env_json.iloc[0]
        assert sum("benchmark_model --graph=" in c for c in phone.commands) == 12
        assert remote_files(phone) == []

        result = CliRunner().invoke(
            app, ["devices", "--adb-server", server.address, "--no-usb", "--tcp", serial]
        )
        assert result.exit_code == 0, result.output
        assert f"{serial}" in result.output and "adb-server (tcp)" in result.output
        assert result.output.count("Emulated Phone (host CPU)") == 2  # via the server and direct
        server.adb("disconnect", serial)


def test_cli_profile_labels_host_cpu_numbers(phone, tmp_path):
    device = phone_file(tmp_path / "emu.yaml", phone.port)
    db = tmp_path / "s.sqlite"
    args = ["profile", "--device", str(device), "--space", "proxyless-tiny", "--limit", "3"]
    result = CliRunner().invoke(app, [*args, "--db", str(db), "--keep"])
    assert result.exit_code == 0, result.output
    assert EMULATED_LABEL in result.output
    assert "benchmark_model" in remote_files(phone)  # --keep
    with MeasurementStore(db) as store:
        assert len(store.dataframe("emu")) == 3


def test_cli_error_is_one_line_without_traceback(tmp_path):
    device = phone_file(tmp_path / "gone.yaml", free_port())
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from latkit.cli import main; main()",
            "profile",
            "--device",
            str(device),
            "--db",
            str(tmp_path / "s.sqlite"),
            "--limit",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert "nothing answers at 127.0.0.1:" in result.stderr and "Traceback" not in result.stderr


def test_network_and_single_runs(phone, tmp_path):
    profiler, _ = make_profiler(phone_file(tmp_path / "emu.yaml", phone.port))
    try:
        ((_, network),) = TINY.sample_networks(1, seed=0)
        measured = profiler.measure_network(network)
        assert measured.op is None and measured.stats.runs == 6 and measured.stats.median_ms > 0
    finally:
        profiler.close()
    assert remote_files(phone) == []


# --- heat --------------------------------------------------------------------------------------


def test_throttling_waits_visibly_and_never_stores_a_hot_run(tmp_path):
    # reads: before op 1, after op 1 (hot: discarded), three polls while cooling, after the retake
    with EmulatedPhone(faults=Faults(temperatures=(40, 50, 50, 50, 38))) as phone:
        timing = {"warmup": 1, "runs": 3, "rounds": 1, "max_cv": 10.0, "max_retries": 1}
        device = phone_file(tmp_path / "hot.yaml", phone.port, timing=timing)
        with MeasurementStore(tmp_path / "s.sqlite") as store:
            summary, out = profile(device, OPS[:2], store)
            frame = store.dataframe("emu")
    assert summary.measured == 2
    assert "phone at 50.0 °C, above max_temperature_c 45 °C: pausing until it cools" in out
    assert "reached 50.0 °C during the run" in out and "discarding it" in out
    assert "phone cooled to 38.0 °C" in out
    assert (frame.temperature_c == 38.0).all()  # the stored runs are the cool ones
    assert sum("benchmark_model --graph=" in c for c in phone.commands) == 3  # one retaken


def test_a_phone_that_stays_hot_stops_the_profile_and_resume_continues(tmp_path):
    faults = Faults(temperatures=(40, 40, 60))
    with EmulatedPhone(faults=faults) as phone:
        timing = {"warmup": 1, "runs": 3, "rounds": 1, "max_cv": 10.0, "max_retries": 0}
        device = phone_file(
            tmp_path / "hot.yaml", phone.port, timing=timing, cooldown_s=0.2, batch_push=1
        )
        with MeasurementStore(tmp_path / "s.sqlite") as store:
            with pytest.raises(LatkitError, match=r"still at 60.0 °C after waiting cooldown_s=0.2"):
                profile(device, OPS[:3], store)
            assert list(store.dataframe("emu").key) == [OPS[0].key]  # finished op kept
            faults.temperatures = ()
            summary, _ = profile(device, OPS[:3], store)
            assert (summary.skipped, summary.measured) == (1, 2)
            assert (store.dataframe("emu").temperature_c <= 45).all()


# --- unplugged mid-run -------------------------------------------------------------------------


def test_connections_killed_at_random_points_lose_and_duplicate_nothing(tmp_path):
    ops = OPS[:5]
    expected = {op.key for op in ops}
    rng = random.Random(20240611)
    with EmulatedPhone() as phone:
        device = phone_file(tmp_path / "emu.yaml", phone.port, batch_push=2)
        with MeasurementStore(tmp_path / "probe.sqlite") as store:
            profile(device, ops, store)
        services = phone.opened  # what one uninterrupted profile opens
        failures = 0
        for trial in range(20):
            db = tmp_path / f"trial{trial}.sqlite"
            phone.opened = 0
            # any service but the last: the final clean-up in close() swallows a dead link;
            # half the cuts come at the OPEN, half after the phone did the work but before it
            # answered (a benchmark that ran, a file that was written)
            phone.faults.drop_after = rng.randrange(services - 1)
            phone.faults.drop_mid_stream = trial % 2 == 1
            with MeasurementStore(db) as store:
                with pytest.raises(ConnectionLost, match="run the same command again to resume"):
                    profile(device, ops, store)
                failures += 1
                before = set(store.dataframe("emu").key)
                assert before <= expected
                summary, _ = profile(device, ops, store)  # the resume
                assert summary.skipped == len(before)
                assert summary.measured == len(ops) - len(before)
                assert set(store.dataframe("emu").key) == expected
            with sqlite3.connect(db) as conn:
                (rows,) = conn.execute("SELECT COUNT(*) FROM measurements").fetchone()
            assert rows == len(ops)
        assert failures == 20 and phone.drops == 20


# --- one clear message per failure -------------------------------------------------------------


def test_unparseable_output_is_saved_next_to_the_store(phone, tmp_path):
    device = phone_file(tmp_path / "gpu.yaml", phone.port, delegate="gpu")
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(BenchmarkParseError, match="raw output saved to") as caught:
            profile(device, OPS[:1], store)
    message = str(caught.value)
    assert "exited with status 1" in message and "GPU delegate is not available" in message
    (raw,) = (tmp_path / "raw").iterdir()
    assert str(raw) in message and raw.name.startswith("emu-Conv-input_32x32x3")
    assert "--use_gpu=true" in raw.read_text() and "Benchmarking failed" in raw.read_text()


def test_wrong_abi_and_missing_binary(phone, tmp_path):
    x86 = tmp_path / "benchmark_model_x86"
    x86.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (62).to_bytes(2, "little") + bytes(40))
    device = phone_file(tmp_path / "abi.yaml", phone.port, benchmark_model=str(x86))
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(LatkitError, match="built for x86_64 but the phone .* is arm64-v8a"):
            profile(device, OPS[:1], store)
        missing = phone_file(tmp_path / "missing.yaml", phone.port, benchmark_model="nope/bm")
        with pytest.raises(LatkitError, match=r"android.benchmark_model nope/bm does not exist"):
            profile(missing, OPS[:1], store)
        unset = phone_file(tmp_path / "unset.yaml", phone.port, benchmark_model=None)
        with pytest.raises(LatkitError, match="android.benchmark_model is not set"):
            profile(unset, OPS[:1], store)


@pytest.mark.parametrize("shell_v2", [True, False])
def test_sdcard_is_noexec_on_new_and_old_phones(tmp_path, shell_v2):
    with EmulatedPhone(shell_v2=shell_v2) as phone:
        ok = phone_file(tmp_path / "ok.yaml", phone.port)
        bad = phone_file(tmp_path / "sd.yaml", phone.port, name="sd", remote_dir="/sdcard/latkit")
        with MeasurementStore(tmp_path / "s.sqlite") as store:
            assert profile(ok, OPS[:2], store)[0].measured == 2  # exit codes work on both
            with pytest.raises(LatkitError, match="not executable .* noexec mount"):
                profile(bad, OPS[:1], store)
        if not shell_v2:
            assert any(c.endswith("; echo :latkit-exit:$?") for c in phone.commands)


def test_authentication_failures(tmp_path):
    key = tmp_path / "adbkey"
    keygen(str(key))
    public = (tmp_path / "adbkey.pub").read_text()
    with EmulatedPhone(authorized_keys=[public]) as phone:
        with MeasurementStore(tmp_path / "s.sqlite") as store:
            signed = phone_file(tmp_path / "k.yaml", phone.port, adb_key=str(key))
            assert profile(signed, OPS[:1], store)[0].measured == 1
            keyless = phone_file(tmp_path / "n.yaml", phone.port)
            with pytest.raises(
                AdbError,
                match="asks for RSA authentication.*does not exist; create it with `adb keygen",
            ):
                profile(keyless, OPS[:1], store)
            broken = tmp_path / "broken"
            broken.write_text("not a key")
            (tmp_path / "broken.pub").write_text("x")
            bad = phone_file(tmp_path / "b.yaml", phone.port, adb_key=str(broken))
            with pytest.raises(AdbError, match="is not an adb private key"):
                profile(bad, OPS[:1], store)
    with EmulatedPhone(faults=Faults(unauthorized=True)) as phone:
        signed = phone_file(tmp_path / "k.yaml", phone.port, adb_key=str(key))
        with MeasurementStore(tmp_path / "s.sqlite") as store:
            with pytest.raises(AdbError, match="unauthorized: .* accept the 'Allow USB debugging"):
                profile(signed, OPS[:1], store)
    usb = phone_file(tmp_path / "usb.yaml", 5555, transport="usb", adb_key=str(tmp_path / "x"))
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(
            AdbError, match=r"adb_key .* does not exist; create one with `adb keygen"
        ):
            profile(usb, OPS[:1], store)
        usb_keyed = phone_file(tmp_path / "usb2.yaml", 5555, transport="usb", adb_key=str(key))
        with pytest.raises(AdbError, match="USB"):  # no phone on this machine's USB, or no libusb
            profile(usb_keyed, OPS[:1], store)


def test_unreachable_phones_and_servers(tmp_path):
    port = free_port()
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(AdbError, match=f"nothing answers at 127.0.0.1:{port}.*adb tcpip"):
            profile(phone_file(tmp_path / "t.yaml", port), OPS[:1], store)
        no_server = phone_file(
            tmp_path / "s.yaml",
            port,
            transport="adb-server",
            adb_server=f"127.0.0.1:{port}",
            serial="X",
        )
        with pytest.raises(AdbError, match=f"no adb server at 127.0.0.1:{port}.*adb start-server"):
            profile(no_server, OPS[:1], store)
        with private_adb_server(tmp_path / "home") as server:
            unknown = phone_file(
                tmp_path / "u.yaml",
                port,
                transport="adb-server",
                adb_server=server.address,
                serial="R58M123",
            )
            with pytest.raises(AdbError, match="has no device R58M123"):
                profile(unknown, OPS[:1], store)


@pytest.mark.parametrize("name", ["phone-usb", "phone-wifi", "phone-adb-server", "emulated-phone"])
def test_example_device_files(name):
    config = load_device(ROOT / "device_configs" / f"{name}.yaml")
    assert config.kind == "android" and config.android.cpu_affinity == "f0"
    if name == "emulated-phone":  # its relative benchmark_model resolves beside the file
        profiler = get_profiler(config)
        assert profiler.benchmark_binary().startswith(b"#!/system/bin/sh\n")
