"""`--dataset imagefolder:DIR` through real torchvision on a class-folder tree made on the fly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latkit.errors import LatkitError
from latkit.search.datasets import load_dataset

CLASSES = [f"n{i:02d}" for i in range(10)]


def image_tree(root: Path, train: int = 6, val: int = 2, seed: int = 0) -> Path:
    """train/CLASS/*.jpg and val/CLASS/*.png of different sizes: each class has its own colour,
    plus noise, so a class is learnable and every image differs."""
    rng = np.random.default_rng(seed)
    for split, count, suffix in (("train", train, ".jpg"), ("val", val, ".png")):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = rng.integers(36, 60, size=2)
                base = np.array([25 * c, 255 - 25 * c, 128], dtype=np.int16)
                noise = rng.integers(-40, 40, size=(h, w, 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}{suffix}")
    return root


def test_imagefolder_splits_shapes_and_augmentation(tmp_path, torchvision):
    root = image_tree(tmp_path / "tree")
    data = load_dataset(f"imagefolder:{root}", 32, seed=0)
    assert data.name == "imagefolder" and data.num_classes == 10
    # 60 training images: 6 held out (10%) for the architecture steps; val/ is the test split
    assert (len(data.train), len(data.val), len(data.test)) == (54, 6, 20)
    x, y = next(data.test.batches(20))
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [c for c in range(10) for _ in range(2)]  # ImageFolder's class order
    # held-out and test images are resized and centre-cropped: the same every time
    again = load_dataset(f"imagefolder:{root}", 32, seed=0)
    assert torch.equal(next(again.test.batches(20))[0], x)
    assert torch.equal(next(again.val.batches(6))[0], next(data.val.batches(6))[0])
    # training images get random crops and flips: the same index loads differently per draw
    index = [torch.arange(8)]
    torch.manual_seed(1)
    first = next(data.train.load(index))[0]
    torch.manual_seed(2)
    second = next(data.train.load(index))[0]
    assert first.shape == (8, 3, 32, 32) and not torch.equal(first, second)
    # the seed decides which training images are held out
    other = load_dataset(f"imagefolder:{root}", 32, seed=1)
    assert not np.array_equal(other.val.indices, data.val.indices)


def test_imagefolder_errors_are_one_line(tmp_path, torchvision):
    with pytest.raises(LatkitError, match="needs its folder"):
        load_dataset("imagefolder", 32)
    with pytest.raises(LatkitError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}", 32)
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(LatkitError, match="has no val/"):
        load_dataset(f"imagefolder:{tmp_path / 'half'}", 32)
    root = image_tree(tmp_path / "tree", train=2, val=1)
    (root / "val" / "extra").mkdir()
    Image.new("RGB", (40, 40)).save(root / "val" / "extra" / "0.png")
    with pytest.raises(LatkitError, match="same class folders.*extra"):
        load_dataset(f"imagefolder:{root}", 32)
    with pytest.raises(LatkitError, match="as RGB but the space takes 1"):
        load_dataset(f"imagefolder:{tmp_path / 'tree'}", 32, channels=1)


def test_a_broken_image_names_its_file(tmp_path, torchvision):
    root = image_tree(tmp_path / "tree", train=2, val=1)
    broken = root / "val" / CLASSES[3] / "0.png"
    broken.write_bytes(b"not a png")
    data = load_dataset(f"imagefolder:{root}", 32)
    with pytest.raises(LatkitError) as caught:
        list(data.test.batches(4))
    message = str(caught.value)
    assert "\n" not in message and str(broken) in message and "not a readable image" in message


def test_without_the_extra_the_error_says_what_to_install(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    monkeypatch.setitem(sys.modules, "torchvision", None)  # what an absent package does
    with pytest.raises(LatkitError, match=r"needs torchvision: pip install 'latkit\[vision\]'"):
        load_dataset(f"imagefolder:{root}", 32)
