"""Datasets and transforms: the bundled Fashion-MNIST (image folders and ImageNet come with the trainer)."""

from .fashion_mnist import CLASS_NAMES, DatasetUnavailableError, FashionMNIST, fetch_fashion_mnist

__all__ = ["CLASS_NAMES", "DatasetUnavailableError", "FashionMNIST", "fetch_fashion_mnist"]
