"""Android commands: list the phones latkit can reach, and run the emulated phone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from latkit.cli.app import app, writable_dir
from latkit.cli.output import console
from latkit.errors import LatkitError

AdbServer = Annotated[
    str | None,
    typer.Option(
        "--adb-server",
        help="adb server to ask, as HOST:PORT (default: 127.0.0.1, port 5037 or the "
        "ANDROID_ADB_SERVER_PORT variable, as adb does).",
        show_default=False,
    ),
]
Tcp = Annotated[
    list[str],
    typer.Option(
        "--tcp",
        help="HOST:PORT of a phone on wireless debugging (or the emulated phone); repeatable.",
    ),
]
Usb = Annotated[
    bool,
    typer.Option("--usb/--no-usb", help="Also look for phones on USB directly (needs libusb)."),
]
AdbKey = Annotated[
    str,
    typer.Option("--adb-key", help="RSA key for phones reached directly (USB or --tcp)."),
]
DeviceFiles = Annotated[
    list[Path],
    typer.Option(
        "--device-files",
        help="Device file, or folder of them, to match against the phones found (repeatable; "
        "default: ./device_configs when it exists).",
    ),
]
Port = Annotated[
    int, typer.Option("--port", min=1, max=65535, help="Loopback TCP port to listen on.")
]
Auth = Annotated[
    bool,
    typer.Option(
        "--auth/--no-auth",
        help="Require RSA authentication, accepting only --authorized-key keys.",
    ),
]
AuthorizedKeys = Annotated[
    list[Path],
    typer.Option(
        "--authorized-key",
        help="adbkey.pub file whose key the phone trusts (repeatable; with --auth, the default "
        "is the .pub file of your adb key).",
    ),
]
Temperatures = Annotated[
    str,
    typer.Option(
        "--temperatures",
        help="Fault: °C the SoC reports on successive reads, comma-separated (e.g. 40,52,50,38).",
    ),
]
DropAfter = Annotated[
    int | None,
    typer.Option(
        "--drop-after",
        min=0,
        help="Fault: cut the connection when the host opens service N+1 (once).",
    ),
]
DropMidStream = Annotated[
    bool,
    typer.Option(
        "--drop-mid-stream",
        help="Fault: with --drop-after, cut after that service did its work, before it answers.",
    ),
]
Unauthorized = Annotated[
    bool,
    typer.Option("--unauthorized", help="Fault: ask for AUTH and never accept any key."),
]
ShellV2 = Annotated[
    bool,
    typer.Option(
        "--shell-v2/--no-shell-v2", help="--no-shell-v2 behaves like Android 6 (no exit codes)."
    ),
]
Root = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Sandbox folder for the phone's files (default: a temporary folder).",
        callback=writable_dir,
    ),
]


@app.command()
def devices(
    adb_server: AdbServer = None,
    tcp: Tcp = [],  # noqa: B006 (typer passes a fresh list; none is kept)
    usb: Usb = True,
    adb_key: AdbKey = "~/.android/adbkey",
    device_files: DeviceFiles = [],  # noqa: B006
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
    port: Port = 15585,
    auth: Auth = False,
    authorized_key: AuthorizedKeys = [],  # noqa: B006 (typer passes a fresh list; none is kept)
    temperatures: Temperatures = "",
    drop_after: DropAfter = None,
    drop_mid_stream: DropMidStream = False,
    unauthorized: Unauthorized = False,
    shell_v2: ShellV2 = True,
    root: Root = None,
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
