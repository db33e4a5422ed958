"""The `sync:` file service (adb's SYNC.TXT): STAT, STA2/LST2, LIST, SEND, RECV and QUIT."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from latkit.emulator.system import FileError
from latkit.profilers.android.protocol import (
    DENT_V1,
    STAT_V1,
    STAT_V2,
    SYNC_DATA_MAX,
    SYNC_REQUEST,
    sync_request,
)

if TYPE_CHECKING:
    from latkit.emulator.transport import Session, Stream


class StreamClosed(Exception):
    """The host closed the stream (or the connection) while the phone was still talking."""


class SyncService:
    """The `sync:` file service over one stream (SYNC.TXT)."""

    def __init__(self, session: Session, stream: Stream) -> None:
        self.session = session
        self.stream = stream
        self.shell = session.phone.shell
        self.buffer = bytearray()

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.stream.inbox.get()
            if chunk is None:
                raise StreamClosed()
            self.buffer += chunk
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def request(self) -> tuple[bytes, int]:
        kind, length = SYNC_REQUEST.unpack(self.read(SYNC_REQUEST.size))
        return kind, length

    def reply(self, data: bytes) -> None:
        self.session.write(self.stream, data)

    def fail(self, message: str) -> None:
        self.reply(sync_request(b"FAIL", message.encode()))

    def serve(self) -> None:
        handlers = {
            b"STAT": self.stat_v1,
            b"STA2": self.stat_v2,
            b"LST2": self.stat_v2,
            b"LIST": self.list,
            b"SEND": self.send,
            b"RECV": self.recv,
        }
        while True:
            kind, length = self.request()
            if kind == b"QUIT":
                return
            if length > 4096:
                self.fail(f"path too long ({length} bytes)")
                return
            path = self.read(length).decode("utf-8", "replace")
            handler = handlers.get(kind)
            if handler is None:
                self.fail(f"unknown sync request {kind!r}")
                return
            with self.shell.lock:
                handler(kind, path)

    def stat_v1(self, _kind: bytes, path: str) -> None:
        try:
            mode, size, mtime = self.shell.stat(path)
        except FileError:
            mode = size = mtime = 0
        self.reply(STAT_V1.pack(b"STAT", mode, size & 0xFFFFFFFF, mtime))

    def stat_v2(self, kind: bytes, path: str) -> None:
        try:
            mode, size, mtime = self.shell.stat(path)
            error = 0
        except FileError as exc:
            mode = size = mtime = 0
            error = exc.errno
        self.reply(STAT_V2.pack(kind, error, 0, 0, mode, 1, 2000, 2000, size, mtime, mtime, mtime))

    def list(self, _kind: bytes, path: str) -> None:
        payload = b""
        try:
            names = self.shell.listdir(path)
        except FileError:
            names = []
        for name in names:
            try:
                mode, size, mtime = self.shell.stat(posixpath.join(path, name))
            except FileError:
                continue
            encoded = name.encode()
            payload += DENT_V1.pack(b"DENT", mode, size & 0xFFFFFFFF, mtime, len(encoded)) + encoded
        self.reply(payload + DENT_V1.pack(b"DONE", 0, 0, 0, 0))

    def send(self, _kind: bytes, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"
        data = bytearray()
        while True:
            kind, length = self.request()
            if kind == b"DATA":
                if length > SYNC_DATA_MAX:
                    self.fail(f"DATA chunk of {length} bytes exceeds {SYNC_DATA_MAX}")
                    raise StreamClosed()
                data += self.read(length)
            elif kind == b"DONE":
                break
            else:
                self.fail(f"unexpected {kind!r} during SEND")
                raise StreamClosed()
        self.session.phone.pushed.append(path)
        try:
            mode = int(mode_text) if mode_text.isdigit() else 0o644
            self.shell.write(path, bytes(data), mode)
        except FileError as exc:
            self.fail(f"couldn't create file: {exc}")
            return
        self.reply(sync_request(b"OKAY"))

    def recv(self, _kind: bytes, path: str) -> None:
        try:
            data = self.shell.read(path)
        except FileError as exc:
            self.fail(f"open failed: {exc}")
            return
        payload = b"".join(
            sync_request(b"DATA", data[i : i + SYNC_DATA_MAX])
            for i in range(0, len(data), SYNC_DATA_MAX)
        )
        self.reply(payload + sync_request(b"DONE"))
