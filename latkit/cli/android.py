"""Android commands: list the phones latkit can reach, and run the emulated phone."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from latkit.cli.app import app, writable_dir
from latkit.cli.output import console
from latkit.errors import LatkitError


@app.command()
def devices(
    adb_server: str = typer.Option(
        None,
        "--adb-server",
        help="adb server to ask, as HOST:PORT (default: 127.0.0.1, port 5037 or the "
        "ANDROID_ADB_SERVER_PORT variable, as adb does).",
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
    device_files: list[Path] = typer.Option(
        [],
        "--device-files",
        help="Device file, or folder of them, to match against the phones found (repeatable; "
        "default: ./device_configs when it exists).",
    ),
) -> None:
    """List the Android phones latkit can reach: serial, transport, state, model, and which
    device files reach each one.

    Asks the adb server, looks on USB directly, and tries each --tcp address; the model is read
    over ADB. Put the serial and transport in a device file (see device_configs/phone-*.yaml);
    device files that reach no phone found are listed below the table.
    """
    from latkit.workflows.discovery import discover

    files = device_files or ([Path("device_configs")] if Path("device_configs").is_dir() else [])
    found = discover(adb_server, tcp, usb, adb_key, files)
    if found.phones:
        matched = any(phone.files for phone in found.phones)
        table = Table(title="Android devices")
        for col in ("serial", "transport", "state", "model", "device files")[: 5 if matched else 4]:
            table.add_column(col)
        for phone in found.phones:
            files = ["\n".join(phone.files) or "-"] if matched else []
            table.add_row(phone.serial, phone.transport, phone.state, phone.model, *files)
        console.print(table)
    else:
        console.print(
            "no Android devices found: plug a phone in with USB debugging on (README, 'Profile "
            "your phone over USB'), or start the emulated phone with `latkit emulate-phone` and "
            "pass --tcp 127.0.0.1:PORT"
        )
    for note in found.notes:
        console.print(note, style="dim")
    if found.unmatched:
        console.print("device files that reach none of these phones:")
        for line in found.unmatched:
            console.print(f"  {line}", soft_wrap=True)


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
        help="adbkey.pub file whose key the phone trusts (repeatable; with --auth, the default "
        "is the .pub file of your adb key).",
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
        None,
        help="Sandbox folder for the phone's files (default: a temporary folder).",
        callback=writable_dir,
    ),
) -> None:
    """Run an emulated phone on 127.0.0.1 that speaks the real ADB protocol.

    adb, adb-shell and latkit connect to it as to a phone on wireless debugging; it runs
    benchmark_model as LiteRT on this host, so its numbers are host-CPU numbers. Profile it with
    `latkit profile --device device_configs/emulated-phone.yaml`. Ctrl-C stops it.
    """
    from latkit.emulator import MODEL, EmulatedPhone, Faults

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
        f"emulated phone {MODEL} on 127.0.0.1:{port} (serial {phone.serial}): its numbers "
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
