"""Datasets and transforms: the bundled Fashion-MNIST and checked image folders (ImageNet comes with the trainer)."""

from .fashion_mnist import CLASS_NAMES, DatasetUnavailableError, FashionMNIST, fetch_fashion_mnist
from .image_folder import (
    CorruptImageWarning,
    DatasetError,
    SkipCorrupt,
    collate_skipping,
    find_classes,
    image_folder_split,
    image_folders,
    load_rgb,
)

__all__ = ["CLASS_NAMES", "CorruptImageWarning", "DatasetError", "DatasetUnavailableError", "FashionMNIST",
           "SkipCorrupt", "collate_skipping", "fetch_fashion_mnist", "find_classes", "image_folder_split",
           "image_folders", "load_rgb"]
