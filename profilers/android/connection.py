"""Reach a phone by the device file's `transport`, and turn every ADB failure into one clear line.

- `usb`: adb-shell's `AdbDeviceUsb` (libusb), signing with the RSA key at `adb_key`;
- `tcp`: adb-shell over TCP (wireless debugging, `adb tcpip 5555`, or the emulated phone);
- `adb-server`: the smart-socket protocol of a running `adb` server (`host:transport:SERIAL`, then
  `shell,v2,raw:` and `sync:`), for when Android Studio or another tool already holds the phone.

Every command goes out as an argv whose words are all `shlex.quote`d (`Connection.shell(argv)`), so
nothing a device file or an op name contains can become shell syntax on the phone.
"""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adb_shell import exceptions as adb_exceptions
from adb_shell.adb_device import AdbDevice, AdbDeviceUsb
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from adb_shell.transport.tcp_transport import TcpTransport

from latkit.devices import AndroidSettings
from latkit.errors import LatkitError
from latkit.profilers.android.protocol import (
    SYNC_REQUEST,
    ShellResult,
    ShellV2Decoder,
    command_line,
    sync_chunks,
    sync_request,
)

#: first Android API level whose adbd speaks shell protocol v2 (exit codes, split stderr)
SHELL_V2_SDK = 24
EXIT_MARKER = ":latkit-exit:"
_MARKER = re.compile(re.escape(EXIT_MARKER) + r"(\d+)\n?")
SHELL_TIMEOUT_S = 60.0


class AdbError(LatkitError):
    """The phone could not be reached or refused: the message says what to do."""


class ConnectionLost(AdbError):
    """The connection dropped mid-run (cable pulled, Wi-Fi lost, phone rebooted)."""


def lost(serial: str, what: str, exc: BaseException) -> ConnectionLost:
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return ConnectionLost(
        f"lost the connection to {serial} while {what} ({detail}); every finished op is in the "
        "store: reconnect the phone and run the same command again to resume"
    )


class Connection(ABC):
    """One phone, whatever the transport: quoted shell commands, file push and pull."""

    transport: str = ""
    serial: str = ""

    @abstractmethod
    def _shell(self, command: str, timeout_s: float) -> ShellResult: ...

    @abstractmethod
    def push(self, data: bytes, remote: str, mode: int = 0o644) -> None:
        """Write `data` to the absolute phone path `remote`."""

    @abstractmethod
    def pull(self, remote: str) -> bytes: ...

    @abstractmethod
    def close(self) -> None: ...

    def shell(self, argv: Sequence[str], timeout_s: float = SHELL_TIMEOUT_S) -> ShellResult:
        """Run one command on the phone; every word of `argv` is quoted."""
        return self._shell(command_line(*argv), timeout_s)


def _v1_result(raw: bytes) -> ShellResult:
    """Split the exit marker a v1 shell appends (`; echo :latkit-exit:$?`) off the output."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    markers = list(_MARKER.finditer(text))
    if not markers:
        return ShellResult(text, "", None)
    last = markers[-1]
    return ShellResult(text[: last.start()] + text[last.end() :], "", int(last.group(1)))


# --- adb-shell (usb, tcp) ------------------------------------------------------------------------


#: what adb-shell raises when the link breaks mid-command
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    adb_exceptions.AdbConnectionError,
    adb_exceptions.AdbTimeoutError,
    adb_exceptions.InvalidChecksumError,
    adb_exceptions.InvalidCommandError,
    adb_exceptions.InvalidResponseError,
    adb_exceptions.TcpTimeoutException,
    adb_exceptions.UsbReadFailedError,
    adb_exceptions.UsbWriteFailedError,
    OSError,
    struct.error,
)


class AdbShellConnection(Connection):
    """adb-shell's AdbDevice (USB or TCP), with exit codes from shell v2 where the phone has it."""

    def __init__(self, device, serial: str, transport: str) -> None:
        self.device = device
        self.serial = serial
        self.transport = transport
        self.shell_v2 = False
        sdk = self._shell(command_line("getprop", "ro.build.version.sdk"), SHELL_TIMEOUT_S)
        self.shell_v2 = sdk.stdout.strip().isdigit() and int(sdk.stdout.strip()) >= SHELL_V2_SDK

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except TRANSPORT_ERRORS as exc:
            raise lost(self.serial, what, exc) from None

    def _shell(self, command: str, timeout_s: float) -> ShellResult:
        with self._guard(f"running `{command[:80]}`"):
            if self.shell_v2:
                raw = self.device._service(  # adb-shell has no public v2 call; this is its own path
                    b"shell,v2,raw",
                    command.encode(),
                    transport_timeout_s=timeout_s,
                    read_timeout_s=timeout_s,
                    decode=False,
                )
                decoder = ShellV2Decoder()
                decoder.feed(raw)
                return decoder.result()
            raw = self.device.shell(
                f"{command}; echo {EXIT_MARKER}$?",
                transport_timeout_s=timeout_s,
                read_timeout_s=timeout_s,
                decode=False,
            )
            return _v1_result(raw)

    def push(self, data: bytes, remote: str, mode: int = 0o644) -> None:
        with self._guard(f"pushing {remote}"):
            try:
                self.device.push(io.BytesIO(data), remote, st_mode=stat.S_IFREG | mode)
            except adb_exceptions.PushFailedError as exc:
                raise AdbError(f"the phone refused to write {remote}: {exc}") from None

    def pull(self, remote: str) -> bytes:
        buffer = io.BytesIO()
        with self._guard(f"pulling {remote}"):
            self.device.pull(remote, buffer)
        return buffer.getvalue()

    def close(self) -> None:
        try:
            self.device.close()
        except Exception:  # noqa: BLE001 - closing a dead transport may fail in any way
            pass


def _signer(settings: AndroidSettings, source: str, required: bool):
    """The RSA signer for `adb_key`, or None for a tcp phone when no key file exists."""
    path = Path(os.path.expanduser(settings.adb_key))
    create = f"create one with `adb keygen {settings.adb_key}` (or run any adb command once)"
    if not path.exists():
        if not required:
            return None
        raise AdbError(f"{source}: android.adb_key {settings.adb_key} does not exist; {create}")
    try:
        return PythonRSASigner.FromRSAKeyPath(str(path))
    except FileNotFoundError:
        raise AdbError(
            f"{source}: android.adb_key needs the public half {path}.pub too; {create}"
        ) from None
    except PermissionError:
        raise AdbError(
            f"{source}: android.adb_key {path} is not readable by this user; fix its permissions "
            f"(chmod 600) or {create}"
        ) from None
    except (ValueError, IndexError, TypeError) as exc:
        raise AdbError(
            f"{source}: android.adb_key {path} is not an adb private key ({exc}); {create}"
        ) from None


class EofTcpTransport(TcpTransport):
    """adb-shell's TcpTransport, except that a closed socket raises at once and small packets
    go out without delay.

    The stock transport returns b'' on a closed socket and adb-shell keeps reading until its
    read timeout, so an unplugged phone would look like a 10 s hang instead of a dropped link.
    """

    def connect(self, transport_timeout_s):
        super().connect(transport_timeout_s)
        # adb-shell writes header and payload separately: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every command
        self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def bulk_read(self, numbytes, transport_timeout_s):
        data = super().bulk_read(numbytes, transport_timeout_s)
        if not data:
            raise ConnectionResetError("the phone closed the connection")
        return data


@dataclass
class _AuthWatch:
    """Notices when adb-shell has sent our public key: the phone now shows its prompt."""

    prompted: bool = False
    on_prompt: Callable[[], None] | None = None

    def __call__(self, _device) -> None:
        self.prompted = True
        if self.on_prompt:
            self.on_prompt()


UNAUTHORIZED = (
    "{serial} is unauthorized: unlock the phone and accept the 'Allow USB debugging?' prompt "
    "(tick 'Always allow from this computer'), then run again"
)


def _connect_adb_shell(
    device,
    serial: str,
    transport: str,
    signer,
    source: str,
    key_path: str,
    auth_timeout_s: float,
    on_prompt: Callable[[], None] | None,
) -> AdbShellConnection:
    watch = _AuthWatch(on_prompt=on_prompt)
    try:
        device.connect(
            rsa_keys=[signer] if signer else None,
            transport_timeout_s=10.0,
            auth_timeout_s=auth_timeout_s,
            read_timeout_s=10.0,
            auth_callback=watch,
        )
    except adb_exceptions.DeviceAuthError:
        raise AdbError(
            f"{serial} asks for RSA authentication but android.adb_key {key_path} (in {source}) "
            f"does not exist; create it with `adb keygen {key_path}`"
        ) from None
    except TRANSPORT_ERRORS as exc:
        if watch.prompted:
            raise AdbError(UNAUTHORIZED.format(serial=serial)) from None
        raise AdbError(f"could not connect to {serial} over {transport}: {exc}") from None
    return AdbShellConnection(device, serial, transport)


def connect_usb(
    settings: AndroidSettings,
    source: str,
    auth_timeout_s: float = 30.0,
    on_prompt: Callable[[], None] | None = None,
) -> AdbShellConnection:
    signer = _signer(settings, source, required=True)
    which = f" with serial {settings.serial}" if settings.serial else ""
    try:
        device = AdbDeviceUsb(serial=settings.serial, default_transport_timeout_s=10.0)
    except adb_exceptions.InvalidTransportError:
        raise AdbError(
            "USB needs libusb (apt install libusb-1.0-0, or pip install 'adb-shell[usb]'); "
            f"or set `transport: adb-server` in {source}"
        ) from None
    except adb_exceptions.UsbDeviceNotFoundError:
        raise AdbError(
            f"no Android device{which} on USB: plug it in, enable USB debugging "
            "(docs/guides/phone.md, 'Over USB'), and check `latkit devices`"
        ) from None
    import usb1  # importable here: AdbDeviceUsb above needs it

    try:
        return _connect_adb_shell(
            device,
            settings.serial or "the USB phone",
            "usb",
            signer,
            source,
            settings.adb_key,
            auth_timeout_s,
            on_prompt,
        )
    except usb1.USBErrorBusy:
        raise AdbError(
            "the phone's USB interface is held by another program, usually a running adb server: "
            f"run `adb kill-server`, or set `transport: adb-server` in {source}"
        ) from None
    except usb1.USBErrorAccess:
        raise AdbError(
            "no permission to open the phone's USB device: add a udev rule for it "
            "(docs/guides/phone.md, 'Over USB') or set `transport: adb-server`"
        ) from None
    except usb1.USBError as exc:
        raise AdbError(f"USB error talking to the phone: {exc}; replug it and run again") from None


def connect_tcp(
    settings: AndroidSettings,
    source: str,
    auth_timeout_s: float = 30.0,
    on_prompt: Callable[[], None] | None = None,
) -> AdbShellConnection:
    host, port = settings.host or "", settings.port
    serial = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise AdbError(
            f"nothing answers at {serial} ({exc.strerror or exc}): enable wireless debugging, or "
            f"run `adb tcpip {port}` with the phone on USB; check android.host/port in {source}"
        ) from None
    signer = _signer(settings, source, required=False)
    device = AdbDevice(EofTcpTransport(host, port), default_transport_timeout_s=10.0)
    return _connect_adb_shell(
        device, serial, "tcp", signer, source, settings.adb_key, auth_timeout_s, on_prompt
    )


# --- adb server (smart sockets) ------------------------------------------------------------------


class AdbServer:
    """A running adb server's host services (`host:devices-l`, `host-serial:...:features`)."""

    def __init__(self, address: str = "127.0.0.1:5037") -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise AdbError(f"adb server address {address!r} must look like 127.0.0.1:5037")
        self.address = address
        self.host, self.port = host, int(port)

    def socket(self, timeout_s: float = 10.0) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=timeout_s)
        except OSError:
            raise AdbError(
                f"no adb server at {self.address}: start one with `adb start-server` "
                "(or check android.adb_server)"
            ) from None

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionResetError("the adb server closed the connection")
            data += chunk
        return bytes(data)

    def request(self, sock: socket.socket, payload: str) -> None:
        """Send one smart-socket request; raise AdbError with the server's FAIL text."""
        data = payload.encode()
        sock.sendall(f"{len(data):04x}".encode() + data)
        status = self._recv_exact(sock, 4)
        if status == b"OKAY":
            return
        if status == b"FAIL":
            length = int(self._recv_exact(sock, 4), 16)
            raise AdbError(self._recv_exact(sock, length).decode("utf-8", "replace"))
        raise AdbError(f"the adb server at {self.address} answered {status!r} to {payload!r}")

    def query(self, payload: str) -> str:
        with self.socket() as sock:
            self.request(sock, payload)
            length = int(self._recv_exact(sock, 4), 16)
            return self._recv_exact(sock, length).decode("utf-8", "replace")

    def devices(self) -> list[dict[str, str]]:
        """`adb devices -l`: serial, state and the `key:value` fields (model, transport_id...)."""
        rows = []
        for line in self.query("host:devices-l").splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            row = {"serial": parts[0], "state": parts[1]}
            row.update(p.split(":", 1) for p in parts[2:] if ":" in p)
            rows.append(row)
        return rows


class AdbServerConnection(Connection):
    """A phone reached through a running adb server: one socket per command, as `adb` does."""

    transport = "adb-server"

    def __init__(self, server: AdbServer, serial: str | None) -> None:
        self.server = server
        self.target = f"host:transport:{serial}" if serial else "host:transport-any"
        self.serial = serial or "the adb server's only device"
        features_query = f"host-serial:{serial}:features" if serial else "host:features"
        try:
            features = server.query(features_query)
        except AdbError as exc:
            raise self._explain(exc) from None
        except OSError as exc:
            raise lost(self.serial, "asking the adb server for features", exc) from None
        self.shell_v2 = "shell_v2" in features.split(",")

    def _explain(self, exc: AdbError) -> AdbError:
        text = str(exc)
        if "unauthorized" in text:
            return AdbError(UNAUTHORIZED.format(serial=self.serial))
        if "not found" in text or "no devices" in text:
            try:
                seen = ", ".join(f"{d['serial']} ({d['state']})" for d in self.server.devices())
            except (AdbError, OSError):
                seen = ""
            return AdbError(
                f"the adb server at {self.server.address} has no device {self.serial}"
                + (f"; it has: {seen}" if seen else "; `adb devices` lists none")
                + " (set android.serial, or plug the phone in)"
            )
        if "more than one" in text:
            return AdbError(
                f"the adb server at {self.server.address} has several devices: set android.serial"
            )
        if "offline" in text:
            return AdbError(f"{self.serial} is offline: replug it, or run `adb reconnect`")
        return AdbError(f"adb server at {self.server.address}: {text}")

    @contextmanager
    def _service(self, service: str, what: str, timeout_s: float) -> Iterator[socket.socket]:
        sock = self.server.socket(timeout_s)
        try:
            try:
                self.server.request(sock, self.target)
                self.server.request(sock, service)
            except AdbError as exc:
                raise self._explain(exc) from None
            yield sock
        except OSError as exc:
            raise lost(self.serial, what, exc) from None
        finally:
            sock.close()

    def _shell(self, command: str, timeout_s: float) -> ShellResult:
        what = f"running `{command[:80]}`"
        if self.shell_v2:
            with self._service(f"shell,v2,raw:{command}", what, timeout_s) as sock:
                decoder = ShellV2Decoder()
                for chunk in iter(lambda: sock.recv(65536), b""):
                    decoder.feed(chunk)
                result = decoder.result()
            if result.exit_code is None:
                raise lost(self.serial, what, ConnectionResetError("no exit status"))
            return result
        with self._service(f"shell:{command}; echo {EXIT_MARKER}$?", what, timeout_s) as sock:
            raw = b"".join(iter(lambda: sock.recv(65536), b""))
        return _v1_result(raw)

    def push(self, data: bytes, remote: str, mode: int = 0o644) -> None:
        what = f"pushing {remote}"
        with self._service("sync:", what, SHELL_TIMEOUT_S) as sock:
            payload = sync_request(b"SEND", f"{remote},{stat.S_IFREG | mode}".encode())
            payload += b"".join(sync_chunks(data))
            payload += SYNC_REQUEST.pack(b"DONE", int(time.time()))
            sock.sendall(payload)
            kind, length = SYNC_REQUEST.unpack(self.server._recv_exact(sock, SYNC_REQUEST.size))
            if kind == b"FAIL":
                message = self.server._recv_exact(sock, length).decode("utf-8", "replace")
                raise AdbError(f"the phone refused to write {remote}: {message}")
            sock.sendall(sync_request(b"QUIT"))

    def pull(self, remote: str) -> bytes:
        what = f"pulling {remote}"
        data = bytearray()
        with self._service("sync:", what, SHELL_TIMEOUT_S) as sock:
            sock.sendall(sync_request(b"RECV", remote.encode()))
            while True:
                kind, length = SYNC_REQUEST.unpack(self.server._recv_exact(sock, SYNC_REQUEST.size))
                if kind == b"DONE":
                    break
                chunk = self.server._recv_exact(sock, length)
                if kind == b"FAIL":
                    raise AdbError(f"cannot read {remote}: {chunk.decode('utf-8', 'replace')}")
                data += chunk
            sock.sendall(sync_request(b"QUIT"))
        return bytes(data)

    def close(self) -> None:
        """Nothing is held between commands."""


def connect_adb_server(settings: AndroidSettings, source: str, **_: object) -> AdbServerConnection:
    return AdbServerConnection(AdbServer(settings.adb_server), settings.serial)


CONNECTORS: dict[str, Callable[..., Connection]] = {
    "usb": connect_usb,
    "tcp": connect_tcp,
    "adb-server": connect_adb_server,
}


def connect(
    settings: AndroidSettings,
    source: str = "device file",
    auth_timeout_s: float = 30.0,
    on_prompt: Callable[[], None] | None = None,
) -> Connection:
    """A live connection by `settings.transport`, or an AdbError that says what to do."""
    return CONNECTORS[settings.transport](
        settings, source, auth_timeout_s=auth_timeout_s, on_prompt=on_prompt
    )
