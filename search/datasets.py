"""Real datasets for the search: train (weights), val (arch, accuracy), test.

`digits` is scikit-learn's bundled 8x8 set, upsampled to the space's input size and repeated to its
input channels. `cifar10:DIR` reads the python-pickle batches from a local folder; nothing is ever
downloaded. Both are in-memory tensors normalised per channel with the training split's statistics.
`imagefolder:DIR` streams a class-folder tree through torchvision (`latkit.search.imagefolder`).

A split is read by index batches (`load`): the trainer draws the order of the global batch and each
data-parallel rank loads only its share, so the order never depends on how many processes run.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from latkit.errors import LatkitError
from latkit.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]


def index_batches(order: torch.Tensor, batch_size: int, drop_last: bool = False) -> list:
    """`order` cut into batches; `drop_last` drops a short last batch unless it is the only one."""
    n = len(order)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    return [order[start : start + batch_size] for start in range(0, stop, batch_size)]


class DataSplit(Protocol):
    """What the trainer reads: a length, and (images, labels) for each batch of indices."""

    def __len__(self) -> int: ...

    def load(self, batches: Iterable[torch.Tensor]) -> Iterator[Batch]: ...

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[Batch]: ...


class Batching:
    """`batches` for any split with `load`: shuffled when a generator is given, else in order."""

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[Batch]:
        n = len(self)  # type: ignore[arg-type]
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        return self.load(index_batches(order, batch_size, drop_last))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Split(Batching):
    """A split held in memory as one tensor of images and one of labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def load(self, batches: Iterable[torch.Tensor]) -> Iterator[Batch]:
        for index in batches:
            yield self.x[index], self.y[index]


@dataclass(frozen=True)
class Dataset:
    name: str
    train: DataSplit
    val: DataSplit
    test: DataSplit
    num_classes: int


def _prepare(images: np.ndarray, input_hw: int, channels: int) -> torch.Tensor:
    """NCHW float images resized to `input_hw` and repeated (or cut) to `channels`."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.shape[-1] != input_hw:
        x = F.interpolate(x, size=(input_hw, input_hw), mode="bilinear", align_corners=False)
    if x.shape[1] != channels:
        if x.shape[1] != 1:
            raise LatkitError(
                f"images have {x.shape[1]} channels but the space takes {channels}; only "
                "grayscale images are repeated to more channels"
            )
        x = x.repeat(1, channels, 1, 1)
    return x.contiguous()


def _normalise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _split(n: int, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = (int(round(f * n)) for f in fractions)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def load_digits_dataset(
    input_hw: int, channels: int = 3, seed: int = 0, location: str | None = None
) -> Dataset:
    """sklearn's 1797 digits: 60% train, 20% val, 20% test, split reproducibly from `seed`."""
    if location:
        raise LatkitError("dataset 'digits' is bundled with scikit-learn and takes no folder")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0)[:, None].astype(np.float32)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    train, val, test = _split(len(labels), (0.2, 0.2), seed)
    x = _prepare(images, input_hw, channels)
    xs = _normalise(x[train], x[val], x[test])
    return Dataset(
        "digits",
        Split(xs[0], labels[train]),
        Split(xs[1], labels[val]),
        Split(xs[2], labels[test]),
        10,
    )


# --- CIFAR-10 ----------------------------------------------------------------------------------

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def _numpy_reconstruct() -> Callable:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other global.

    The CIFAR batches come from outside the project, so they must not run arbitrary code. An
    ndarray pickles as `_reconstruct(ndarray, shape, dtype)` plus a state of raw bytes, which needs
    exactly these globals: numpy's `_reconstruct` (under its numpy 1 and numpy 2 module paths),
    `numpy.ndarray`, `numpy.dtype`, and `_codecs.encode`, which is how Python 3 writes bytes in
    pickle protocol 2. Nothing else is allowed, so a crafted file can at most build arrays.
    """

    def find_class(self, module: str, name: str):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy", "ndarray"): lambda: np.ndarray,
            ("numpy", "dtype"): lambda: np.dtype,
            ("_codecs", "encode"): _latin1_encode,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return allowed[(module, name)]()


def _latin1_encode() -> Callable:
    def encode(text: str, encoding: str = "latin1") -> bytes:
        if encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}")
        return text.encode("latin1")

    return encode


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise LatkitError(f"{path}: cannot read CIFAR-10 batch ({exc.strerror})") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise LatkitError(f"{path}: not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise LatkitError(f"{path}: not a CIFAR-10 python batch (expected a dict)")
    data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise LatkitError(f"{path}: field 'data' must be a uint8 array of N x 3072 pixels")
    if data.shape[1] != 3 * 32 * 32:
        raise LatkitError(f"{path}: field 'data' has {data.shape[1]} values per image, not 3072")
    if len(data) == 0:
        raise LatkitError(f"{path}: the batch holds no images")
    if labels is None or len(labels) != len(data):
        raise LatkitError(f"{path}: field 'labels' must hold one label per image")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise LatkitError(f"{path}: labels must be 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_folder(location: str | None) -> Path:
    if not location:
        raise LatkitError("dataset cifar10 needs its folder: --dataset cifar10:DIR")
    folder = Path(location).expanduser()
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise LatkitError(f"cifar10 folder {folder} does not exist")
    missing = [n for n in (*CIFAR_TRAIN, CIFAR_TEST) if not (folder / n).is_file()]
    if missing:
        raise LatkitError(
            f"cifar10 folder {folder} lacks {', '.join(missing)}; it needs the python version "
            "(cifar-10-python.tar.gz, extracted)"
        )
    return folder


def load_cifar10_dataset(
    input_hw: int,
    channels: int = 3,
    seed: int = 0,
    location: str | None = None,
    val_fraction: float = 0.1,
) -> Dataset:
    """CIFAR-10 from the extracted python batches; val is held out of the training batches."""
    folder = _cifar_folder(location)
    parts = [_read_cifar_batch(folder / name) for name in CIFAR_TRAIN]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _read_cifar_batch(folder / CIFAR_TEST)
    if channels != 3:
        raise LatkitError(f"cifar10 images have 3 channels but the space takes {channels}")
    order = np.random.default_rng(seed).permutation(len(labels))
    n_val = max(1, int(round(val_fraction * len(labels))))
    val, train = order[:n_val], order[n_val:]
    x = _prepare(images.astype(np.float32) / 255.0, input_hw, channels)
    x_test = _prepare(test_images.astype(np.float32) / 255.0, input_hw, channels)
    xs = _normalise(x[train], x[val], x_test)
    y = torch.as_tensor(labels)
    return Dataset(
        "cifar10",
        Split(xs[0], y[train]),
        Split(xs[1], y[val]),
        Split(xs[2], torch.as_tensor(test_labels)),
        10,
    )


#: loaders by the name before the colon of `--dataset NAME[:LOCATION]`
DATASETS: Registry[Callable[..., Dataset]] = Registry("--dataset")
DATASETS.register("digits", load_digits_dataset)
DATASETS.register("cifar10", load_cifar10_dataset, usage="cifar10:DIR")
DATASETS.register(
    "imagefolder", "latkit.search.imagefolder:load_imagefolder_dataset", usage="imagefolder:DIR"
)


def load_dataset(spec: str, input_hw: int, channels: int = 3, seed: int = 0) -> Dataset:
    """`digits`, `cifar10:DIR` or `imagefolder:DIR`, at the space's input size and channels."""
    name, _, location = spec.partition(":")
    return DATASETS.create(name, input_hw, channels, seed=seed, location=location or None)
