"""Small sets of preprocessed real images: for checking an export, calibrating INT8 (and channel pruning) and
measuring INT8's agreement with float32.

From a folder of image files (any depth; unreadable files skipped and counted in one warning) or from the bundled
Fashion-MNIST (evenly spaced indices, so every class is represented: the splits list the images class by class).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from .transforms import InputSpec

REAL_IMAGES = 8
CALIBRATION_IMAGES = 256


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (any depth), sorted; a clear error when there are none."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from .image_folder import DatasetError

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not files:
        raise DatasetError(f"{folder} holds no image files ({', '.join(IMG_EXTENSIONS)})")
    return files


def evenly_spaced(total: int, count: int, offset: float = 0.0) -> list[int]:
    """``min(count, total)`` distinct indices spread evenly over ``range(total)``, starting ``offset`` of a step in.

    Offsets 0 and 0.5 give disjoint sets when ``total >= 2 * count``.
    """
    count = min(count, total)
    return sorted({min(total - 1, int((i + offset) * total / count)) for i in range(count)}) if count else []


def read_images(spec: InputSpec, files: Sequence[Path], count: int, folder: Path) -> torch.Tensor:
    """The first ``count`` readable ``files`` (in the order given) preprocessed with ``spec``, as (N, C, H, W).

    Unreadable files are skipped and counted in one warning; none readable at all is a ``DatasetError``.
    """
    from PIL import Image

    from .image_folder import CORRUPT_ERRORS, CorruptImageWarning, DatasetError

    transform = spec.transform()
    images, skipped = [], 0
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(transform(image))
        except CORRUPT_ERRORS:
            skipped += 1
        if len(images) == count:
            break
    if skipped:
        warnings.warn(f"skipped {skipped} unreadable image file(s) in {folder}", CorruptImageWarning, stacklevel=3)
    if not images:
        raise DatasetError(f"none of the {skipped} image files in {folder} could be read")
    return torch.stack(images)


def spread_folder_images(spec: InputSpec, folder: Path, count: int, offset: float = 0.0) -> torch.Tensor:
    """Up to ``count`` images from ``folder`` picked evenly over its sorted files (the rest stand in for unreadable
    ones), so a class-per-folder layout gives every class."""
    files = image_files(folder)
    picked = evenly_spaced(len(files), count, offset)
    chosen = set(picked)
    order = [files[i] for i in picked] + [f for i, f in enumerate(files) if i not in chosen]
    return read_images(spec, order, count, folder)


def dataset_images(spec: InputSpec, split: str, count: int) -> torch.Tensor:
    """``count`` evenly spaced images of the bundled Fashion-MNIST ``split`` preprocessed with ``spec``."""
    from .fashion_mnist import FashionMNIST

    data = FashionMNIST(split)
    transform = spec.transform()
    return torch.stack([transform(data[i][0]) for i in evenly_spaced(len(data), count)])


def real_images(spec: InputSpec, folder: Path | None, count: int = REAL_IMAGES) -> torch.Tensor | None:
    """A few held-out real images preprocessed with ``spec``: from ``folder``, else the bundled test split."""
    from .fashion_mnist import DatasetUnavailableError, FashionMNIST

    if folder is not None:
        return read_images(spec, image_files(folder), count, folder)
    try:
        test = FashionMNIST("test")
    except DatasetUnavailableError as e:
        warnings.warn(f"no real images for the check ({e}); checked on random inputs only", stacklevel=2)
        return None
    transform = spec.transform()
    step = max(1, len(test) // count)
    return torch.stack([transform(test[i][0]) for i in range(0, min(len(test), step * count), step)])


def calibration_images(spec: InputSpec, folder: Path | None, count: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """Up to ``count`` preprocessed real images for calibration: from ``folder`` (image files at any depth, picked
    evenly over the sorted list; unreadable ones skipped and counted in a warning; ``DatasetError`` if none can be
    read), else the bundled Fashion-MNIST *training* split at evenly spaced indices (every class)."""
    if folder is not None:
        return spread_folder_images(spec, Path(folder), count)
    return dataset_images(spec, "train", count)


def held_out_images(spec: InputSpec, folder: Path | None, count: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """Images to measure agreement on, apart from the calibration set: the bundled *test* split, or from ``folder``
    the files half-way between those :func:`calibration_images` picks (disjoint when it holds ``2 * count``)."""
    if folder is None:
        return dataset_images(spec, "test", count)
    if len(image_files(Path(folder))) < 2 * count:
        warnings.warn(f"{folder} holds fewer than {2 * count} images: the held-out images for the int8 agreement "
                      "overlap the calibration images", stacklevel=2)
    return spread_folder_images(spec, Path(folder), count, offset=0.5)
