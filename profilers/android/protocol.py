"""The ADB wire formats both sides need: packets, shell v2 frames, sync requests, RSA keys.

The emulated phone (device side) and the adb-server client (host side) share these, so the two
ends of every format are written once. References: adb's `protocol.txt`, `SYNC.TXT` and
`shell_protocol.h` in the Android platform sources.
"""

from __future__ import annotations

import base64
import binascii
import shlex
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

# --- transport packets (protocol.txt) -------------------------------------------------------------

A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (
    b"CNXN",
    b"AUTH",
    b"OPEN",
    b"OKAY",
    b"CLSE",
    b"WRTE",
)
COMMANDS = (A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE)
A_VERSION = 0x01000001  # the version that allows a zero checksum; we always send a real one
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
TOKEN_SIZE = 20
HEADER = struct.Struct("<6I")


def _wire(cmd: bytes) -> int:
    return struct.unpack("<I", cmd)[0]


WIRE = {_wire(c): c for c in COMMANDS}


@dataclass(frozen=True)
class Packet:
    command: bytes
    arg0: int
    arg1: int
    data: bytes = b""

    def pack(self) -> bytes:
        word = _wire(self.command)
        checksum = sum(self.data) & 0xFFFFFFFF
        header = HEADER.pack(
            word, self.arg0, self.arg1, len(self.data), checksum, word ^ 0xFFFFFFFF
        )
        return header + self.data


class ProtocolError(Exception):
    """The peer sent bytes that are not an ADB packet."""


def parse_header(raw: bytes) -> tuple[bytes, int, int, int]:
    """(command, arg0, arg1, data length) of a 24-byte header; checks the magic word."""
    word, arg0, arg1, length, _checksum, magic = HEADER.unpack(raw)
    if word not in WIRE or magic != word ^ 0xFFFFFFFF:
        raise ProtocolError(f"not an ADB packet header: {raw[:4]!r}")
    if length > 16 * 1024 * 1024:
        raise ProtocolError(f"packet of {length} bytes is larger than any ADB payload")
    return WIRE[word], arg0, arg1, length


# --- shell protocol v2 (shell_protocol.h) ---------------------------------------------------------

SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4
SHELL_FRAME = struct.Struct("<BI")


def shell_frame(kind: int, data: bytes) -> bytes:
    return SHELL_FRAME.pack(kind, len(data)) + data


@dataclass(frozen=True)
class ShellResult:
    """What one shell command printed and how it exited (None: the device could not say)."""

    stdout: str
    stderr: str
    exit_code: int | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class ShellV2Decoder:
    """Collects stdout, stderr and the exit code from v2 frames split at arbitrary points."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exit_code: int | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= SHELL_FRAME.size:
            kind, length = SHELL_FRAME.unpack_from(self._buffer)
            end = SHELL_FRAME.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[SHELL_FRAME.size : end])
            del self._buffer[:end]
            if kind == SHELL_STDOUT:
                self.stdout += payload
            elif kind == SHELL_STDERR:
                self.stderr += payload
            elif kind == SHELL_EXIT and payload:
                self.exit_code = payload[0]

    def result(self) -> ShellResult:
        return ShellResult(
            self.stdout.decode("utf-8", "replace"),
            self.stderr.decode("utf-8", "replace"),
            self.exit_code,
        )


def parse_service(service: str) -> tuple[str, dict[str, str | bool], str]:
    """`shell,v2,TERM=xterm,raw:CMD` -> ("shell", {"v2": True, "TERM": "xterm", ...}, "CMD")."""
    head, _, rest = service.partition(":")
    name, *args = head.split(",")
    options: dict[str, str | bool] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        options[key] = value if eq else True
    return name, options, rest


def command_line(*argv: str) -> str:
    """One shell command line with every word quoted: nothing in `argv` can become syntax."""
    return " ".join(shlex.quote(str(word)) for word in argv)


# --- sync service (SYNC.TXT) ----------------------------------------------------------------------

SYNC_DATA_MAX = 64 * 1024
SYNC_REQUEST = struct.Struct("<4sI")
STAT_V1 = struct.Struct("<4sIII")  # id, mode, size, mtime
STAT_V2 = struct.Struct(
    "<4sIQQIIIIQqqq"
)  # id, error, dev, ino, mode, nlink, uid, gid, size, a/m/ctime
DENT_V1 = struct.Struct("<4sIIII")  # id, mode, size, mtime, namelen


def sync_request(kind: bytes, payload: bytes = b"") -> bytes:
    return SYNC_REQUEST.pack(kind, len(payload)) + payload


def sync_chunks(data: bytes) -> Iterable[bytes]:
    for start in range(0, len(data), SYNC_DATA_MAX):
        yield sync_request(b"DATA", data[start : start + SYNC_DATA_MAX])


# --- RSA keys in adb's format ---------------------------------------------------------------------

ANDROID_PUBKEY = struct.Struct("<II256s256sI")  # words, n0inv, modulus LE, rr LE, exponent


def decode_adb_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    """An `adbkey.pub` line (base64 of Android's RSAPublicKey struct, then ` user@host`)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    blob_b64 = text.strip().rstrip("\0").split(" ")[0].split("\0")[0]
    try:
        blob = base64.b64decode(blob_b64, validate=True)
        words, _n0inv, modulus, _rr, exponent = ANDROID_PUBKEY.unpack(blob)
    except (binascii.Error, ValueError, struct.error):
        raise ValueError("not an adb public key (base64 of a 2048-bit RSAPublicKey)") from None
    if words != 64:
        raise ValueError(f"adb public key has {words} words, expected 64 (2048-bit RSA)")
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "little")).public_key()


def verify_token(public_key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    """adb signs the 20-byte token as if it were a SHA-1 digest: PKCS#1 v1.5 with SHA-1 DigestInfo."""
    try:
        public_key.verify(signature, token, padding.PKCS1v15(), Prehashed(hashes.SHA1()))
    except (InvalidSignature, ValueError):
        return False
    return True
