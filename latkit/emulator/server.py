"""The emulated phone itself: a loopback TCP server, one ADB session per connection."""

from __future__ import annotations

import os
import socket
import socketserver
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from latkit.emulator.benchmark import HostBenchmark
from latkit.emulator.system import ABI, EmulatedShell, Faults
from latkit.emulator.transport import Session
from latkit.profilers.android.protocol import (
    decode_adb_public_key,
)

MODEL = "Emulated Phone (host CPU)"


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        phone: EmulatedPhone = self.server.phone  # type: ignore[attr-defined]
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = Session(phone, self.request)
        with phone.lock:
            phone.sessions.add(session)
        try:
            session.serve()
        finally:
            with phone.lock:
                phone.sessions.discard(session)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EmulatedPhone:
    """The emulated phone: `with EmulatedPhone() as phone:` serves on 127.0.0.1:`phone.port`.

    `authorized_keys`: adb public keys (`adbkey.pub` text) whose signatures are accepted; with
    none (and no `unauthorized` fault) the phone does not ask for AUTH, like one on which
    "Always allow" was ticked long ago for every key. `shell_v2=False` is a pre-Android-7 phone:
    it refuses `shell,v2` services and does not advertise the feature.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        root: str | Path | None = None,
        authorized_keys: Sequence[str] = (),
        faults: Faults | None = None,
        shell_v2: bool = True,
        serial: str | None = None,
    ) -> None:
        self.requested_port = port
        self._tmp = (
            None if root is not None else tempfile.TemporaryDirectory(prefix="latkit-phone-")
        )
        self.root = Path(root) if root is not None else Path(self._tmp.name)
        self.root.mkdir(parents=True, exist_ok=True)
        self.authorized_keys = [decode_adb_public_key(k) for k in authorized_keys]
        self.faults = faults or Faults()
        self.shell_v2 = shell_v2
        self.serial = serial or f"latkit-emu-{os.getpid()}"
        self.lock = threading.RLock()
        self.sessions: set[Session] = set()
        self.offered_keys: list[str] = []
        self.pushed: list[str] = []  # every SEND path, in order
        self.opened = 0
        self.drops = 0
        benchmark = HostBenchmark()
        self.shell = EmulatedShell(
            self.root,
            self.properties(),
            self.faults,
            lambda args, out: benchmark(args, out, self.shell),
        )
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def properties(self) -> dict[str, str]:
        from latkit.profilers.base import host_model

        return {
            "ro.product.model": MODEL,
            "ro.product.name": "latkit_emulated",
            "ro.product.device": "emulated",
            "ro.product.manufacturer": "latkit",
            "ro.product.board": "emulated",
            "ro.board.platform": "host",
            "ro.hardware": "emulated",
            "ro.soc.manufacturer": "host",
            "ro.soc.model": host_model(),
            "ro.product.cpu.abi": ABI,
            "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
            "ro.build.version.release": "14" if self.shell_v2 else "6.0",
            "ro.build.version.sdk": "34" if self.shell_v2 else "23",
            "ro.build.fingerprint": "latkit/emulated/emulated:14/LATKIT/1:user/release-keys",
            "ro.serialno": self.serial,
            "ro.latkit.emulated": "1",
        }

    def banner(self) -> bytes:
        props = self.shell.props
        features = "shell_v2,cmd,stat_v2,fixed_push_mkdir" if self.shell_v2 else "cmd"
        return (
            f"device::ro.product.name={props['ro.product.name']};"
            f"ro.product.model={props['ro.product.model']};"
            f"ro.product.device={props['ro.product.device']};features={features}"
        ).encode()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulated phone is not started")
        return self._server.server_address[1]

    @property
    def commands(self) -> list[str]:
        """Every shell command line the phone received, in order."""
        return self.shell.commands

    def start(self) -> EmulatedPhone:
        """Listen on loopback (never another interface) and serve in a background thread."""
        self._server = Server(("127.0.0.1", self.requested_port), Handler)
        self._server.phone = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Foreground serving for `latkit emulate-phone`; Ctrl-C stops it."""
        self._server = Server(("127.0.0.1", self.requested_port), Handler)
        self._server.phone = self  # type: ignore[attr-defined]
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def disconnect_all(self) -> None:
        """Cut every live connection, as pulling the cable does."""
        with self.lock:
            sessions = list(self.sessions)
        for session in sessions:
            try:
                session.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=5)
            self.disconnect_all()
            self._server.server_close()
            self._server = None
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmulatedPhone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
