"""Image folders (``DIR/train/<class>/*.jpg``, ``DIR/val/<class>/*.jpg``) checked up front, with corrupt files skipped.

Layout problems (a missing split, no class folders, a class without images, train and val with different classes)
raise :class:`DatasetError` before any training starts. A corrupt or truncated image never crashes an epoch:
:class:`SkipCorrupt` turns it into ``None`` with one :class:`CorruptImageWarning` naming the file and the reason, and
:func:`collate_skipping` drops those and counts them in the batch it returns, so the count also works with
``DataLoader`` workers (each worker has its own copy of the dataset; only the batches come back).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import GhostnetsError

SPLITS = ("train", "val")
LAYOUT = "DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg (one folder per class, the same classes in both)"
# What decoding a bad file raises in PIL: OSError (also UnidentifiedImageError and "image file is truncated"),
# SyntaxError and ValueError from format plugins, EOFError from short reads, DecompressionBombError for absurd sizes.
CORRUPT_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError,
                                                    Image.DecompressionBombError)


class DatasetError(GhostnetsError, ValueError):
    """A dataset folder with a bad layout or contents (missing split, empty class, classes that differ)."""


class CorruptImageWarning(UserWarning):
    """An image file that could not be loaded or transformed and was skipped."""


def _names(names: Iterable[str], limit: int = 5) -> str:
    """``'a', 'b', 'c'`` for up to ``limit`` names, then ``and N more``."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _has_image(folder: Path) -> bool:
    """Whether ``folder`` holds an image file at any depth (stops at the first; follows links like ImageFolder)."""
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
            return True
    return False


def find_classes(split_dir: str | Path) -> list[str]:
    """Sorted class folder names of one split (hidden folders ignored); each must hold at least one image file."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        found = "a file" if split_dir.exists() else "nothing"
        raise DatasetError(f"expected a folder {split_dir}, found {found}. An image-folder dataset is laid out as "
                           f"{LAYOUT}; point the dataset root at DIR.")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetError(f"expected one sub-folder per class in {split_dir}, found none. Lay the images out as "
                           f"{LAYOUT}.")
    empty = [c for c in classes if not _has_image(split_dir / c)]
    if empty:
        raise DatasetError(
            f"{len(empty)} class folder(s) in {split_dir} hold no image file ({', '.join(IMG_EXTENSIONS)}): "
            f"{_names(empty)}. Add images to them or remove them (train and val need the same classes).")
    return classes


def load_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` fully decoded as RGB (grayscale, palette and RGBA convert); truncated files raise."""
    with open(path, "rb") as f, Image.open(f) as image:
        return image.convert("RGB")  # convert() loads every byte: a truncated JPEG raises OSError here, not later


class _CheckedImageFolder(ImageFolder):
    """torchvision's ImageFolder with this module's class discovery (checked, hidden folders ignored) and loader."""

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = find_classes(directory)
        return classes, {c: i for i, c in enumerate(classes)}


def image_folders(root: str | Path, train_transform: Callable | None = None,
                  val_transform: Callable | None = None) -> tuple[Dataset, Dataset, list[str]]:
    """``(train, val, classes)`` from ``root/train`` and ``root/val``, both wrapped in :class:`SkipCorrupt`.

    Items are ``(transform(rgb_image), class_index)``; a transform left as ``None`` is ``ToTensor()`` (float
    3xHxW in [0, 1]). Raises :class:`DatasetError` for a bad layout or when val's classes differ from train's.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"expected a dataset folder {root}, found {'a file' if root.exists() else 'nothing'}. "
                           f"Lay the images out as {LAYOUT}.")
    for split in SPLITS:  # both splits present before scanning either (a scan of ImageNet takes a while)
        if not (root / split).is_dir():
            present = sorted(e.name for e in os.scandir(root) if e.is_dir()) or ["no folders"]
            raise DatasetError(f"expected a '{split}' folder in {root}, found {_names(present)}. Lay the images out "
                               f"as {LAYOUT}" + (" (rename 'validation' to 'val')." if split == "val" and
                                                 (root / "validation").is_dir() else "."))
    train_classes, val_classes = find_classes(root / "train"), find_classes(root / "val")
    if train_classes != val_classes:
        only_train = [c for c in train_classes if c not in set(val_classes)]
        only_val = [c for c in val_classes if c not in set(train_classes)]
        raise DatasetError(
            f"train and val must have the same class folders, found {len(only_train)} only in train "
            f"({_names(only_train) or 'none'}) and {len(only_val)} only in val ({_names(only_val) or 'none'}). "
            f"Add or remove class folders in {root} so both splits match (the class index is the sorted position).")
    train, _ = image_folder_split(root / "train", train_transform)
    val, _ = image_folder_split(root / "val", val_transform)
    return train, val, train_classes


def image_folder_split(split_dir: str | Path, transform: Callable | None = None) -> tuple[Dataset, list[str]]:
    """One checked split (``split_dir/<class>/*``) wrapped in :class:`SkipCorrupt`, and its sorted class names."""
    classes = find_classes(split_dir)
    ds = _CheckedImageFolder(str(split_dir), transform=transform if transform is not None else T.ToTensor(),
                             loader=load_rgb, allow_empty=False)
    return SkipCorrupt(ds), classes


class SkipCorrupt(Dataset):
    """``dataset[i]``, or ``None`` (and one :class:`CorruptImageWarning` naming the file and why) when it raises one
    of :data:`CORRUPT_ERRORS`, the errors PIL raises for a corrupt or truncated file. Other errors propagate.

    Use with ``collate_fn=collate_skipping``, which drops the ``None`` items and counts them.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def _where(self, index: int) -> str:
        samples = getattr(self.dataset, "samples", None)  # ImageFolder: [(path, class_index), ...]
        if samples is not None:
            return str(samples[index][0])
        return f"item {index} of {type(self.dataset).__name__}"

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except CORRUPT_ERRORS as e:
            warnings.warn(f"skipping corrupt image {self._where(index)}: {type(e).__name__}: {e}",
                          CorruptImageWarning, stacklevel=2)
            return None


def collate_skipping(batch: list) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    """``(images, targets, n_skipped)`` from ``(image, target)`` items, dropping the ``None`` ones :class:`SkipCorrupt`
    gives for corrupt files. ``images`` is stacked (N, C, H, W), ``targets`` int64 (N,).

    When every item of the batch was corrupt, ``images`` and ``targets`` are ``None``: skip the step, count the batch.
    """
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, skipped
    images, targets = default_collate(kept)
    return images, torch.as_tensor(targets, dtype=torch.long), skipped
