"""Smaller cuts of the committed Fashion-MNIST subset, for tests whose runs need only a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"


def first_images(path: Path, train: int, test: int) -> Path:
    """Write the first ``train`` training and ``test`` test images of the subset to ``path`` (the bundled format)."""
    with np.load(SUBSET) as data:
        np.savez(path, train_x=data["train_x"][:train], train_y=data["train_y"][:train], test_x=data["test_x"][:test],
                 test_y=data["test_y"][:test])
    return path
