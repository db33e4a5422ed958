"""Which Android phones latkit can reach: through an adb server, on USB directly, over TCP.

Each phone is listed with its serial, transport, state and model (read over ADB), so a user can
copy the serial and transport into a device file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from latkit.devices import AndroidSettings
from latkit.errors import LatkitError
from latkit.profilers.android.connection import (
    AdbError,
    AdbServer,
    AdbServerConnection,
    Connection,
    connect_tcp,
    connect_usb,
)
from latkit.profilers.android.device import parse_getprop

#: seconds to wait for the RSA prompt while only listing phones
AUTH_TIMEOUT_S = 10


@dataclass(frozen=True)
class PhoneRow:
    serial: str
    transport: str
    state: str
    model: str


@dataclass(frozen=True)
class Discovery:
    """The phones found, and why a place could not be searched (no adb server, no libusb)."""

    phones: list[PhoneRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_server() -> str:
    """Where `adb` itself looks: 127.0.0.1 and $ANDROID_ADB_SERVER_PORT (default 5037)."""
    return f"127.0.0.1:{os.environ.get('ANDROID_ADB_SERVER_PORT', '5037')}"


def model_of(connection: Connection) -> str:
    props = parse_getprop(connection.shell(["getprop"]).stdout)
    model = props.get("ro.product.model", "?")
    emulated = props.get("ro.latkit.emulated") == "1"
    return f"{model} (emulated: host-CPU numbers)" if emulated else model


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise LatkitError(f"--tcp {address!r} must look like HOST:PORT, e.g. 192.168.1.20:5555")
    return host, int(port)


def discover(
    adb_server: str | None = None,
    tcp: Sequence[str] = (),
    usb: bool = True,
    adb_key: str = "~/.android/adbkey",
) -> Discovery:
    """Ask the adb server, look on USB directly (phones the server does not hold), and try each
    TCP address."""
    addresses = [parse_address(a) for a in tcp]
    found = Discovery()
    held = _from_server(AdbServer(adb_server or default_server()), found)
    if usb:
        _from_usb(adb_key, held, found)
    for host, port in addresses:
        settings = AndroidSettings(transport="tcp", host=host, port=port, adb_key=adb_key)
        found.phones.append(_direct(f"{host}:{port}", "tcp", connect_tcp, settings))
    return found


def _from_server(server: AdbServer, found: Discovery) -> set[str]:
    try:
        listed = server.devices()
    except (AdbError, OSError) as exc:
        found.notes.append(str(exc))
        return set()
    for row in listed:
        serial, state = row["serial"], row["state"]
        kind = "usb" if "usb" in row else "tcp" if ":" in serial else "usb"
        model = row.get("model", "?").replace("_", " ")
        if state == "device":
            try:
                model = model_of(AdbServerConnection(server, serial))
            except (AdbError, OSError) as exc:
                model = f"? ({exc})"
        found.phones.append(PhoneRow(serial, f"adb-server ({kind})", state, model))
    return {row["serial"] for row in listed}


def _from_usb(adb_key: str, held: set[str], found: Discovery) -> None:
    try:
        from adb_shell.transport.usb_transport import UsbTransport

        serials = [t.serial_number for t in UsbTransport.find_all_adb_devices()]
    except Exception as exc:  # noqa: BLE001 - libusb missing or unusable: say so, go on
        found.notes.append(f"USB not searched ({type(exc).__name__}: {exc}); install libusb-1.0")
        return
    for serial in serials:
        if serial not in held:
            settings = AndroidSettings(transport="usb", serial=serial, adb_key=adb_key)
            found.phones.append(_direct(serial, "usb", connect_usb, settings))


def _direct(serial: str, transport: str, connect, settings: AndroidSettings) -> PhoneRow:
    try:
        connection = connect(settings, "latkit devices", auth_timeout_s=AUTH_TIMEOUT_S)
    except AdbError as exc:
        return PhoneRow(serial, transport, "unavailable", str(exc))
    try:
        return PhoneRow(serial, transport, "device", model_of(connection))
    finally:
        connection.close()
