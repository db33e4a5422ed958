"""Datasets: sklearn's real digits, and CIFAR-10 batches read without running pickled code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from latkit.errors import LatkitError
from latkit.search.datasets import CIFAR_TEST, CIFAR_TRAIN, load_dataset


def test_digits_splits_shapes_and_normalisation():
    data = load_dataset("digits", 32, channels=3, seed=0)
    sizes = (len(data.train), len(data.val), len(data.test))
    assert sum(sizes) == 1797 and sizes == (1079, 359, 359)
    for split in (data.train, data.val, data.test):
        assert split.x.shape[1:] == (3, 32, 32) and split.x.dtype == torch.float32
        assert set(split.y.unique().tolist()) == set(range(10))
        assert torch.equal(split.x[:, 0], split.x[:, 2])  # grayscale repeated
    assert abs(float(data.train.x.mean())) < 1e-3
    assert float(data.train.x.std()) == pytest.approx(1.0, abs=0.02)
    train_rows = {tuple(r) for r in data.train.x[:, 0, ::8, ::8].flatten(1).tolist()}
    test_rows = {tuple(r) for r in data.test.x[:, 0, ::8, ::8].flatten(1).tolist()}
    assert len(train_rows & test_rows) < 10  # disjoint up to duplicate images in the set
    again = load_dataset("digits", 32, seed=0)
    assert torch.equal(again.val.y, data.val.y)
    other = load_dataset("digits", 32, seed=1)
    assert not torch.equal(other.val.y, data.val.y)


def test_digits_batches_cover_the_split_once():
    data = load_dataset("digits", 16, channels=1)
    assert data.train.x.shape[1:] == (1, 16, 16)
    seen = sum(len(y) for _, y in data.train.batches(64, torch.Generator().manual_seed(0)))
    assert seen == len(data.train)
    dropped = list(data.train.batches(64, torch.Generator().manual_seed(0), drop_last=True))
    assert all(len(y) == 64 for _, y in dropped)


def test_unknown_dataset_is_an_error():
    with pytest.raises(LatkitError, match="digits, cifar10:DIR"):
        load_dataset("mnist", 32)


def write_cifar(folder: Path, per_batch: int = 20, numpy1_names: bool = False) -> Path:
    """A CIFAR-10 python folder in the real layout: dicts of b'data' (uint8 N x 3072) and
    b'labels', pickled with protocol 2 as the published files are."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in (*CIFAR_TRAIN, CIFAR_TEST):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(per_batch)],
        }
        blob = pickle.dumps(batch, protocol=2)
        if numpy1_names:  # the real files name numpy 1's module
            blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(blob)
    return folder


@pytest.mark.parametrize("numpy1_names", [False, True])
def test_cifar10_reads_the_python_batches(tmp_path, numpy1_names):
    folder = write_cifar(tmp_path / "cifar-10-batches-py", numpy1_names=numpy1_names)
    data = load_dataset(f"cifar10:{tmp_path}", 32, seed=0)  # the parent folder works too
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    assert data.train.x.shape[1:] == (3, 32, 32)
    raw = pickle.loads((folder / CIFAR_TEST).read_bytes(), encoding="bytes")
    assert data.test.y.tolist() == raw[b"labels"]
    small = load_dataset(f"cifar10:{folder}", 16)
    assert small.train.x.shape[1:] == (3, 16, 16)


def test_cifar10_errors_name_the_problem(tmp_path):
    with pytest.raises(LatkitError, match="needs its folder"):
        load_dataset("cifar10", 32)
    with pytest.raises(LatkitError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}", 32)
    folder = write_cifar(tmp_path / "c")
    (folder / "data_batch_3").unlink()
    with pytest.raises(LatkitError, match="lacks data_batch_3"):
        load_dataset(f"cifar10:{folder}", 32)
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(LatkitError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_dataset(f"cifar10:{folder}", 32)
    bad = {b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(LatkitError, match="3072"):
        load_dataset(f"cifar10:{folder}", 32)


class Payload:
    """What a hostile batch file could carry: unpickling it would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_cifar10_never_runs_code_from_a_batch_file(tmp_path):
    folder = write_cifar(tmp_path / "c")
    marker = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(
        pickle.dumps({b"data": Payload(marker), b"labels": []}, protocol=2)
    )
    with pytest.raises(LatkitError, match="refusing global"):
        load_dataset(f"cifar10:{folder}", 32)
    assert not marker.exists()
