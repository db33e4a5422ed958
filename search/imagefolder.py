"""`--dataset imagefolder:DIR`: a `train/` + `val/` class-folder tree (ImageNet-100 style).

Read through torchvision's `ImageFolder`, the optional extra `latkit[vision]`. As ProxylessNAS does
for ImageNet, the architecture's validation split is held out of `train/` (10%, seeded) and `val/`
is the test split. Training images get the standard augmentation (random resized crop, horizontal
flip); held-out and test images are resized and centre-cropped. Images are decoded in DataLoader
worker processes, batch by batch, in the order of the index batches the trainer asks for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latkit.errors import LatkitError
from latkit.search.datasets import Batch, Batching, Dataset

#: ImageNet's per-channel statistics, the usual normalisation for class-folder trees
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: the share of the resize that the centre crop keeps (224 of 256)
CROP = 0.875
WORKERS = min(8, os.cpu_count() or 1)


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError:
        raise LatkitError(
            "--dataset imagefolder needs torchvision: pip install 'latkit[vision]'"
        ) from None
    except RuntimeError as exc:  # a torchvision built for another torch
        raise LatkitError(
            f"torchvision does not load beside torch {torch.__version__} ({exc}); install the "
            "torchvision release built for this torch"
        ) from None
    return torchvision


def _read_image(path: str):
    """PIL's RGB image, or one line naming the file that is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise LatkitError(f"{path}: not a readable image ({exc})") from None


class ImageFolderSplit(Batching):
    """Some images of one `ImageFolder`, with one transform, loaded by index batches."""

    def __init__(self, folder: Any, indices: np.ndarray, workers: int = WORKERS) -> None:
        self.folder, self.indices, self.workers = folder, np.asarray(indices), workers

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.folder[int(self.indices[i])]

    def load(self, batches: Iterable[torch.Tensor]) -> Iterator[Batch]:
        batches = [b.tolist() for b in batches]
        if not batches:
            return
        loader = torch.utils.data.DataLoader(
            self,
            batch_sampler=batches,
            num_workers=min(self.workers, len(batches)),
            pin_memory=torch.cuda.is_available(),
        )
        try:
            yield from loader
        except LatkitError as exc:  # raised in a worker: keep its own last line
            raise LatkitError(
                str(exc).strip().splitlines()[-1].split("LatkitError: ")[-1]
            ) from None


def _folder(location: str | None) -> Path:
    if not location:
        raise LatkitError("dataset imagefolder needs its folder: --dataset imagefolder:DIR")
    root = Path(location).expanduser()
    if not root.is_dir():
        raise LatkitError(f"imagefolder folder {root} does not exist")
    missing = [name for name in ("train", "val") if not (root / name).is_dir()]
    if missing:
        raise LatkitError(
            f"imagefolder folder {root} has no {' or '.join(f'{m}/' for m in missing)}; it needs "
            "train/CLASS/IMAGE and val/CLASS/IMAGE"
        )
    return root


def load_imagefolder_dataset(
    input_hw: int,
    channels: int = 3,
    seed: int = 0,
    location: str | None = None,
    val_fraction: float = 0.1,
) -> Dataset:
    """`DIR/train` (minus a seeded held-out share for the architecture steps) and `DIR/val`."""
    root = _folder(location)
    vision = _torchvision()
    from torchvision import transforms as T

    if channels != 3:
        raise LatkitError(f"imagefolder images are read as RGB but the space takes {channels}")
    normalise = [T.ToTensor(), T.Normalize(MEAN, STD)]
    augment = T.Compose([T.RandomResizedCrop(input_hw), T.RandomHorizontalFlip(), *normalise])
    plain = T.Compose([T.Resize(int(round(input_hw / CROP))), T.CenterCrop(input_hw), *normalise])
    folders = {}
    for name, transform in (("train", augment), ("held", plain), ("val", plain)):
        where = root / ("val" if name == "val" else "train")
        try:
            folders[name] = vision.datasets.ImageFolder(
                str(where), transform=transform, loader=_read_image
            )
        except (FileNotFoundError, OSError) as exc:
            raise LatkitError(f"imagefolder {where}: {exc}") from None
    if folders["train"].classes != folders["val"].classes:
        only = sorted(set(folders["train"].classes) ^ set(folders["val"].classes))
        raise LatkitError(
            f"imagefolder {root}: train/ and val/ must hold the same class folders "
            f"(only in one of them: {', '.join(only[:5])})"
        )
    n = len(folders["train"])
    order = np.random.default_rng(seed).permutation(n)
    n_held = max(1, int(round(val_fraction * n)))
    if n - n_held < 2:
        raise LatkitError(f"imagefolder {root / 'train'} holds {n} images; it needs at least 3")
    return Dataset(
        "imagefolder",
        ImageFolderSplit(folders["train"], np.sort(order[n_held:])),
        ImageFolderSplit(folders["held"], np.sort(order[:n_held])),
        ImageFolderSplit(folders["val"], np.arange(len(folders["val"]))),
        len(folders["train"].classes),
    )
