"""A folder this process may read but not write, even when the tests run as root (as in CI).

Root writes through file modes because it holds CAP_DAC_OVERRIDE. As root, the calling thread
drops that capability from its effective set while the block runs (it stays permitted, so it is
raised again afterwards), and root is then held to the owner's mode bits like anyone else. Not a
test module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CAP_DAC_OVERRIDE = 1
_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _effective(cap: int, on: bool) -> None:
    """Raise or drop one capability in this thread's effective set."""
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    bit = 1 << cap
    data[0].effective = data[0].effective | bit if on else data[0].effective & ~bit
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _modes(root: Path, folders: int, files: int) -> None:
    for folder, _, names in os.walk(root):
        os.chmod(folder, folders)
        for name in names:
            os.chmod(os.path.join(folder, name), files)


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` and its files read-only to this thread inside the block; yields the folder."""
    _modes(folder, 0o555, 0o444)
    root = os.geteuid() == 0
    if root:
        _effective(CAP_DAC_OVERRIDE, False)
    try:
        yield folder
    finally:
        if root:
            _effective(CAP_DAC_OVERRIDE, True)
        _modes(folder, 0o755, 0o644)
