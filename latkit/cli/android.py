"""Android commands: list the phones latkit can reach, and run the emulated phone."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from latkit.cli.app import app, console
from latkit.errors import LatkitError


def _default_server() -> str:
    """Where `adb` itself looks: 127.0.0.1 and $ANDROID_ADB_SERVER_PORT (default 5037)."""
    return f"127.0.0.1:{os.environ.get('ANDROID_ADB_SERVER_PORT', '5037')}"


def _model(connection) -> str:
    from profilers.android.device import parse_getprop

    props = parse_getprop(connection.shell(["getprop"]).stdout)
    model = props.get("ro.product.model", "?")
    return (
        f"{model} (emulated: host-CPU numbers)" if props.get("ro.latkit.emulated") == "1" else model
    )


@app.command()
def devices(
    adb_server: str = typer.Option(
        None,
        "--adb-server",
        help="adb server to ask (default 127.0.0.1:$ANDROID_ADB_SERVER_PORT or :5037).",
        show_default=False,
    ),
    tcp: list[str] = typer.Option(
        [],
        "--tcp",
        help="HOST:PORT of a phone on wireless debugging (or the emulated phone); repeatable.",
    ),
    usb: bool = typer.Option(
        True, "--usb/--no-usb", help="Also look for phones on USB directly (needs libusb)."
    ),
    adb_key: str = typer.Option(
        "~/.android/adbkey", help="RSA key for phones reached directly (USB or --tcp)."
    ),
) -> None:
    """List the Android phones latkit can reach: serial, transport, state, model.

    Asks the adb server, looks on USB directly, and tries each --tcp address; the model is read
    over ADB. Put the serial and transport in a device file (see device_configs/phone-*.yaml).
    """
    from latkit.devices import AndroidSettings
    from profilers.android.connection import (
        AdbError,
        AdbServer,
        AdbServerConnection,
        connect_tcp,
        connect_usb,
    )

    table = Table(title="Android devices")
    for col in ("serial", "transport", "state", "model"):
        table.add_column(col)
    notes: list[str] = []
    held: set[str] = set()
    server = AdbServer(adb_server or _default_server())
    try:
        listed = server.devices()
    except (AdbError, OSError) as exc:
        listed = []
        notes.append(str(exc))
    for row in listed:
        serial, state = row["serial"], row["state"]
        held.add(serial)
        kind = "usb" if "usb" in row else "tcp" if ":" in serial else "usb"
        model = row.get("model", "?").replace("_", " ")
        if state == "device":
            try:
                model = _model(AdbServerConnection(server, serial))
            except (AdbError, OSError) as exc:
                model = f"? ({exc})"
        table.add_row(serial, f"adb-server ({kind})", state, model)
    if usb:
        try:
            from adb_shell.transport.usb_transport import UsbTransport

            found = [t.serial_number for t in UsbTransport.find_all_adb_devices()]
        except Exception as exc:  # noqa: BLE001 - libusb missing or unusable: say so, go on
            found = []
            notes.append(f"USB not searched ({type(exc).__name__}: {exc}); install libusb-1.0")
        for serial in found:
            if serial in held:
                continue
            settings = AndroidSettings(transport="usb", serial=serial, adb_key=adb_key)
            try:
                connection = connect_usb(settings, "latkit devices", auth_timeout_s=10)
                table.add_row(serial, "usb", "device", _model(connection))
                connection.close()
            except AdbError as exc:
                table.add_row(serial, "usb", "unavailable", str(exc))
    for address in tcp:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise LatkitError(f"--tcp {address!r} must look like HOST:PORT, e.g. 192.168.1.20:5555")
        settings = AndroidSettings(transport="tcp", host=host, port=int(port), adb_key=adb_key)
        try:
            connection = connect_tcp(settings, "latkit devices", auth_timeout_s=10)
            table.add_row(address, "tcp", "device", _model(connection))
            connection.close()
        except AdbError as exc:
            table.add_row(address, "tcp", "unavailable", str(exc))
    if table.row_count:
        console.print(table)
    else:
        console.print(
            "no Android devices found: plug a phone in with USB debugging on (README, 'Profile your phone over USB'), "
            "or start the emulated phone with `latkit emulate-phone` and pass --tcp 127.0.0.1:PORT"
        )
    for note in notes:
        console.print(f"[dim]{note}[/]", highlight=False)


@app.command("emulate-phone")
def emulate_phone(
    port: int = typer.Option(15585, min=1, max=65535, help="Loopback TCP port to listen on."),
    auth: bool = typer.Option(
        False,
        "--auth/--no-auth",
        help="Require RSA authentication, accepting only --authorized-key keys.",
    ),
    authorized_key: list[Path] = typer.Option(
        [],
        "--authorized-key",
        help="adbkey.pub file whose key the phone trusts (repeatable; with --auth, default "
        "~/.android/adbkey.pub).",
    ),
    temperatures: str = typer.Option(
        "",
        help="Fault: °C the SoC reports on successive reads, comma-separated (e.g. 40,52,50,38).",
    ),
    drop_after: int | None = typer.Option(
        None, min=0, help="Fault: cut the connection when the host opens service N+1 (once)."
    ),
    drop_mid_stream: bool = typer.Option(
        False,
        "--drop-mid-stream",
        help="Fault: with --drop-after, cut after that service did its work, before it answers.",
    ),
    unauthorized: bool = typer.Option(
        False, "--unauthorized", help="Fault: ask for AUTH and never accept any key."
    ),
    shell_v2: bool = typer.Option(
        True,
        "--shell-v2/--no-shell-v2",
        help="--no-shell-v2 behaves like Android 6 (no exit codes).",
    ),
    root: Path | None = typer.Option(
        None, help="Sandbox folder for the phone's files (default: a temporary folder)."
    ),
) -> None:
    """Run an emulated phone on 127.0.0.1 that speaks the real ADB protocol.

    adb, adb-shell and latkit connect to it as to a phone on wireless debugging; it runs
    benchmark_model as LiteRT on this host, so its numbers are host-CPU numbers. Profile it with
    `latkit profile --device device_configs/emulated-phone.yaml`. Ctrl-C stops it.
    """
    from profilers.android.emulator import MODEL, EmulatedPhone, Faults

    keys = []
    key_files = list(authorized_key) or (
        [Path("~/.android/adbkey.pub").expanduser()] if auth else []
    )
    if key_files and not auth:
        raise LatkitError("--authorized-key needs --auth")
    for path in key_files:
        try:
            keys.append(path.expanduser().read_text())
        except OSError as exc:
            raise LatkitError(
                f"--authorized-key {path}: cannot read it ({exc.strerror}); create a key with "
                "`adb keygen ~/.android/adbkey`"
            ) from None
    try:
        schedule = tuple(float(t) for t in temperatures.split(",") if t.strip())
    except ValueError:
        raise LatkitError(
            f"--temperatures {temperatures!r} must be numbers like 40,52,38"
        ) from None
    try:
        phone = EmulatedPhone(
            port,
            root=root,
            authorized_keys=keys,
            faults=Faults(
                temperatures=schedule,
                drop_after=drop_after,
                drop_mid_stream=drop_mid_stream,
                unauthorized=unauthorized,
            ),
            shell_v2=shell_v2,
        )
    except ValueError as exc:
        raise LatkitError(f"--authorized-key: {exc}") from None
    console.print(
        f"emulated phone [bold]{MODEL}[/] on 127.0.0.1:{port} (serial {phone.serial}): its numbers "
        "are host-CPU numbers.\n"
        f"  adb connect 127.0.0.1:{port}    or    latkit profile --device "
        "device_configs/emulated-phone.yaml\nCtrl-C stops it.",
        highlight=False,
    )
    try:
        phone.serve_forever()
    except OSError as exc:
        raise LatkitError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose another --port"
        ) from None
    except KeyboardInterrupt:
        console.print("emulated phone stopped")
