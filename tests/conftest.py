"""Shared fixtures: the real data beside the repo, and small real device files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.exists():
        pytest.fail(f"the real data folder {SHARED} is missing (CI lays it beside the clone)")
    return SHARED


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
