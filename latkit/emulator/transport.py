"""The ADB transport of the emulated phone: CNXN and RSA AUTH, then OPEN/OKAY/WRTE/CLSE streams
with adb's one-packet flow control, dispatched to shell and sync services."""

from __future__ import annotations

import queue
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from latkit.emulator.sync import StreamClosed, SyncService
from latkit.profilers.android.protocol import (
    A_AUTH,
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_VERSION,
    A_WRTE,
    AUTH_RSAPUBLICKEY,
    AUTH_SIGNATURE,
    AUTH_TOKEN,
    HEADER,
    MAX_PAYLOAD,
    SHELL_EXIT,
    SHELL_STDERR,
    SHELL_STDOUT,
    TOKEN_SIZE,
    Packet,
    ProtocolError,
    parse_header,
    parse_service,
    shell_frame,
    verify_token,
)

if TYPE_CHECKING:
    from latkit.emulator.server import EmulatedPhone


class Dropped(Exception):
    """The fault plan cut the cable."""


@dataclass
class Stream:
    local_id: int
    remote_id: int
    inbox: queue.Queue = field(default_factory=queue.Queue)
    acked: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    cut: bool = False  # the fault plan pulls the cable at this stream's first answer


class Session:
    """One host connected over TCP: handshake, then a reader loop dispatching packets to streams."""

    def __init__(self, phone: EmulatedPhone, sock: socket.socket) -> None:
        self.phone = phone
        self.sock = sock
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.max_payload = MAX_PAYLOAD
        self.alive = True

    # packets ----------------------------------------------------------------------------------

    def _recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionResetError("host closed the connection")
            data += chunk
        return bytes(data)

    def recv(self) -> Packet:
        command, arg0, arg1, length = parse_header(self._recv_exact(HEADER.size))
        return Packet(command, arg0, arg1, self._recv_exact(length) if length else b"")

    def send(self, packet: Packet) -> None:
        with self.send_lock:
            self.sock.sendall(packet.pack())

    # handshake --------------------------------------------------------------------------------

    def handshake(self) -> None:
        packet = self.recv()
        while packet.command != A_CNXN:
            packet = self.recv()
        self.max_payload = max(4096, min(MAX_PAYLOAD, packet.arg1))
        phone = self.phone
        if not (phone.authorized_keys or phone.faults.unauthorized):
            self.send(Packet(A_CNXN, A_VERSION, MAX_PAYLOAD, phone.banner()))
            return
        token = secrets.token_bytes(TOKEN_SIZE)
        self.send(Packet(A_AUTH, AUTH_TOKEN, 0, token))
        while True:
            packet = self.recv()
            if packet.command == A_CNXN:
                token = secrets.token_bytes(TOKEN_SIZE)
                self.send(Packet(A_AUTH, AUTH_TOKEN, 0, token))
            elif packet.command == A_AUTH and packet.arg0 == AUTH_SIGNATURE:
                if not phone.faults.unauthorized and any(
                    verify_token(key, token, packet.data) for key in phone.authorized_keys
                ):
                    self.send(Packet(A_CNXN, A_VERSION, MAX_PAYLOAD, phone.banner()))
                    return
                token = secrets.token_bytes(TOKEN_SIZE)
                self.send(Packet(A_AUTH, AUTH_TOKEN, 0, token))
            elif packet.command == A_AUTH and packet.arg0 == AUTH_RSAPUBLICKEY:
                phone.offered_keys.append(
                    packet.data.rstrip(b"\0").decode("ascii", "replace").strip()
                )
                # the user never taps "Allow" on an emulated phone: stay silent, as a phone does

    # streams ----------------------------------------------------------------------------------

    def serve(self) -> None:
        try:
            self.handshake()
            while True:
                packet = self.recv()
                if packet.command == A_OPEN:
                    self.open(packet)
                elif packet.command == A_OKAY:
                    stream = self.streams.get(packet.arg1)
                    if stream:
                        stream.acked.set()
                elif packet.command == A_WRTE:
                    stream = self.streams.get(packet.arg1)
                    if stream:
                        stream.inbox.put(packet.data)
                        self.send(Packet(A_OKAY, stream.local_id, stream.remote_id))
                elif packet.command == A_CLSE:
                    stream = self.streams.pop(packet.arg1, None)
                    if stream:
                        stream.closed.set()
                        stream.acked.set()
                        stream.inbox.put(None)
                        self.send(Packet(A_CLSE, stream.local_id, stream.remote_id))
                elif packet.command == A_CNXN:
                    self.send(Packet(A_CNXN, A_VERSION, MAX_PAYLOAD, self.phone.banner()))
        except (OSError, ProtocolError, struct.error, Dropped):
            pass
        finally:
            self.alive = False
            for stream in list(self.streams.values()):
                stream.closed.set()
                stream.acked.set()
                stream.inbox.put(None)
            try:
                self.sock.close()
            except OSError:
                pass

    def open(self, packet: Packet) -> None:
        phone = self.phone
        with phone.lock:
            phone.opened += 1
            drop = phone.faults.drop_after is not None and phone.opened > phone.faults.drop_after
            if drop:
                phone.faults.drop_after = None
                phone.drops += 1
        if drop and not phone.faults.drop_mid_stream:
            self.cut()
            raise Dropped()
        service = packet.data.rstrip(b"\0").decode("utf-8", "replace")
        name, options, argument = parse_service(service)
        handler = None
        if name == "shell" and argument and (phone.shell_v2 or "v2" not in options):
            handler = self.shell_v2 if "v2" in options else self.shell_v1
        elif name == "exec" and argument:
            handler = self.shell_v1
        elif name == "sync" and not argument:
            handler = self.sync
        if handler is None:
            self.send(Packet(A_CLSE, 0, packet.arg0))
            return
        stream = Stream(self.next_id, packet.arg0, cut=drop)
        self.next_id += 1
        self.streams[stream.local_id] = stream
        self.send(Packet(A_OKAY, stream.local_id, stream.remote_id))
        threading.Thread(target=self._run, args=(handler, stream, argument), daemon=True).start()

    def _run(self, handler: Callable[[Stream, str], None], stream: Stream, argument: str) -> None:
        try:
            handler(stream, argument)
        except (OSError, StreamClosed):
            pass
        finally:
            self.close(stream)

    def cut(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def write(self, stream: Stream, data: bytes) -> None:
        """WRTE in chunks, each waiting for the host's OKAY (adb's one-packet flow control)."""
        if stream.cut:
            self.cut()
            raise StreamClosed()
        for start in range(0, len(data), self.max_payload):
            if stream.closed.is_set() or not self.alive:
                raise StreamClosed()
            stream.acked.clear()
            self.send(
                Packet(
                    A_WRTE,
                    stream.local_id,
                    stream.remote_id,
                    data[start : start + self.max_payload],
                )
            )
            while not stream.acked.wait(0.5):
                if not self.alive:
                    raise StreamClosed()
            if stream.closed.is_set():
                raise StreamClosed()

    def close(self, stream: Stream) -> None:
        if self.streams.pop(stream.local_id, None) is not None and self.alive:
            try:
                self.send(Packet(A_CLSE, stream.local_id, stream.remote_id))
            except OSError:
                pass

    def shell_v1(self, stream: Stream, command: str) -> None:
        self.write(stream, self.phone.shell.execute_merged(command).encode())

    def shell_v2(self, stream: Stream, command: str) -> None:
        result = self.phone.shell.execute(command)
        payload = b""
        if result.stdout:
            payload += shell_frame(SHELL_STDOUT, result.stdout.encode())
        if result.stderr:
            payload += shell_frame(SHELL_STDERR, result.stderr.encode())
        payload += shell_frame(SHELL_EXIT, bytes([result.exit_code & 0xFF]))
        self.write(stream, payload)

    def sync(self, stream: Stream, _argument: str) -> None:
        SyncService(self, stream).serve()
