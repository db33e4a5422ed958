"""Which Android phones latkit can reach: through an adb server, on USB directly, over TCP.

Each phone is listed with its serial, transport, state and model (read over ADB), so a user can
copy the serial and transport into a device file, and with the device files that would reach
it, so a fleet's files can be checked against what is plugged in before profiling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from latkit.devices import AndroidSettings, DeviceConfig, load_device
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
    #: device files whose android settings reach this phone
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Discovery:
    """The phones found, why a place could not be searched (no adb server, no libusb), and the
    Android device files that reach none of them."""

    phones: list[PhoneRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


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
    device_files: Sequence[str | Path] = (),
) -> Discovery:
    """Ask the adb server, look on USB directly (phones the server does not hold), and try each
    TCP address; then match the Android files among `device_files` (files or folders of them)
    to the phones found."""
    addresses = [parse_address(a) for a in tcp]
    configs = android_files(device_files)
    found = Discovery()
    held = _from_server(AdbServer(adb_server or default_server()), found)
    if usb:
        _from_usb(adb_key, held, found)
    for host, port in addresses:
        settings = AndroidSettings(transport="tcp", host=host, port=port, adb_key=adb_key)
        found.phones.append(_direct(f"{host}:{port}", "tcp", connect_tcp, settings))
    return match_files(found, configs)


def android_files(paths: Sequence[str | Path]) -> list[DeviceConfig]:
    """The Android device files among `paths` (a folder stands for its *.yaml files); a file
    that is not a valid device file is an error naming it."""
    configs = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        elif path.exists():
            files = [path]
        else:
            raise LatkitError(f"--device-files {path}: no such file or folder")
        configs += [c for c in map(load_device, files) if c.android is not None]
    return configs


def reaches(settings: AndroidSettings, phone: PhoneRow) -> bool:
    """Whether a device file's android settings would connect to `phone`."""
    if settings.transport == "tcp":
        return phone.serial == f"{settings.host}:{settings.port}"
    if settings.serial:
        return phone.serial == settings.serial
    return settings.transport == "usb" and "usb" in phone.transport


def where(settings: AndroidSettings) -> str:
    """Where a device file looks for its phone, in words."""
    if settings.transport == "tcp":
        return f"tcp {settings.host}:{settings.port}; check it with --tcp {settings.host}:{settings.port}"
    return f"{settings.transport} serial {settings.serial or '(any)'}"


def match_files(found: Discovery, configs: Sequence[DeviceConfig]) -> Discovery:
    """`found` with each phone's matching device files, and the files that match no phone."""
    phones = [
        replace(
            phone,
            files=tuple(
                c.source or c.name for c in configs if c.android and reaches(c.android, phone)
            ),
        )
        for phone in found.phones
    ]
    unmatched = [
        f"{c.source or c.name} ({where(c.android)})"
        for c in configs
        if c.android and not any(reaches(c.android, p) for p in found.phones)
    ]
    return Discovery(phones, found.notes, unmatched)


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
