"""Fixtures every test module may use: the published data in tests/data, small device files,
a stand-in F (`MacsPredictor`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from postgres_support import PostgresServer, postgres_server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def published() -> Path:
    """Published tables, network configs and tool output (see tests/data/PROVENANCE.md)."""
    return DATA


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A real PostgreSQL server on a loopback port for the whole session."""
    try:
        with postgres_server() as server:
            yield server
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path: Path) -> str:
    """Where a test's store lives, once per back end: a SQLite file, a fresh PostgreSQL
    database."""
    if request.param == "sqlite":
        return str(tmp_path / "s.sqlite")
    return request.getfixturevalue("postgres").database()


def ctrl_c_reaches_it() -> None:
    """A child's `preexec_fn`: SIGINT back to its default. A shell starts a background job with
    SIGINT ignored, and its children inherit that; a user's Ctrl-C always reaches a foreground
    command, which is what the interruption tests act out."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class MacsPredictor:
    """A stand-in F for unit tests and short searches: latency grows with MACs (0.01 ms an op
    plus 1e-8 ms a MAC, the identity free), so a test about the search, the ranks or the table
    does not wait for a fitted F. `calls` counts how often it was asked."""

    def __init__(self, overhead_ms: float = 0.05) -> None:
        self.overhead_ms = overhead_ms
        self.calls = 0

    def contribution(self, ops) -> np.ndarray:
        self.calls += 1
        return np.array([0.0 if op.type == "zero" else 0.01 + op.macs * 1e-8 for op in ops])

    def predict_network(self, ops) -> float:
        return float(self.contribution(ops).sum() + self.overhead_ms)


def write_device(path: Path, **fields) -> Path:
    """A device file with quick timing, for tests that really profile."""
    data = {
        "name": "test-cpu",
        "kind": "cpu",
        "runtime": "onnxruntime",
        "threads": 1,
        "timing": {"warmup": 2, "runs": 5, "rounds": 2, "max_cv": 0.5},
    }
    data.update(fields)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def quick_device(tmp_path: Path) -> Path:
    return write_device(tmp_path / "test-cpu.yaml")


_torchvision_schemas = []


@pytest.fixture(scope="session")
def torchvision():
    """torchvision (the `latkit[vision]` extra), or a skip where it is not installed.

    CI installs PyPI's torchvision release for its torch with --no-deps; PyPI ships it built
    against CUDA torch, so beside the CPU build its C++ ops (nms, roi_align, ...) do not load, and
    its import then stops at registering a fake kernel for `torchvision::nms`. latkit uses none of
    those ops, only ImageFolder and the PIL transforms, which are Python. So where exactly that
    happens, the two op schemas are declared and the import is retried; any other failure stands.
    """
    try:
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed (pip install 'latkit[vision]')")
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        import torch

        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision_schemas.append(library)  # registrations live as long as the Library
        import torchvision
    return torchvision
