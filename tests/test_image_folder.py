"""Image folders: layout checks before training, sorted classes, RGB conversion, corrupt files skipped and counted."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ghostnets.data import (
    CorruptImageWarning,
    DatasetError,
    SkipCorrupt,
    collate_skipping,
    find_classes,
    image_folders,
    load_rgb,
)
from ghostnets.errors import GhostnetsError

RNG = np.random.default_rng(0)


def _write(path: Path, size: int = 16, mode: str = "RGB", fmt: str | None = None) -> Path:
    """A random ``size``x``size`` image in ``mode`` at ``path`` (format from the suffix unless ``fmt``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = RNG.integers(0, 256, (size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path, fmt)
    return path


def _tree(root: Path, layout: dict[str, dict[str, int]], size: int = 16) -> Path:
    """``root/<split>/<class>/<i>.png`` with the given number of images per class (0: an empty folder)."""
    for split, classes in layout.items():
        for name, n in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _write(root / split / name / f"{i}.png", size)
    return root


def _truncated_jpeg(path: Path) -> Path:
    """A valid 32x32 JPEG cut to half its bytes, inside the entropy-coded data (~600 header bytes, ~1,800 in all):
    the header parses and decoding runs out of data, the case ``ImageFile.LOAD_TRUNCATED_IMAGES`` would hide."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG",
                                                                                                  quality=95)
    data = buf.getvalue()
    assert data.find(b"\xff\xda") < len(data) // 2  # the cut falls after the start-of-scan marker
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage_jpeg(path: Path) -> Path:
    path.write_bytes(RNG.integers(0, 256, 300, dtype=np.uint8).tobytes())
    return path


def _raise_message(fn, *args) -> str:
    with pytest.raises(DatasetError) as info:
        fn(*args)
    assert isinstance(info.value, GhostnetsError) and isinstance(info.value, ValueError)
    return str(info.value)


# --- layout ------------------------------------------------------------------------------------------------------


def test_classes_sorted_and_train_val_agree(tmp_path):
    counts = {"zebra": 3, "apple": 2, "Mango": 1}
    _tree(tmp_path, {"train": counts, "val": {"zebra": 1, "apple": 1, "Mango": 2}})
    _write(tmp_path / "train" / ".ipynb_checkpoints" / "x.png")  # hidden folders are not classes
    _write(tmp_path / "val" / ".ipynb_checkpoints" / "x.png")
    train, val, classes = image_folders(tmp_path)
    assert classes == ["Mango", "apple", "zebra"]  # plain sorted order, the same as torchvision's
    assert find_classes(tmp_path / "train") == find_classes(tmp_path / "val") == classes
    assert train.dataset.classes == val.dataset.classes == classes
    assert train.dataset.class_to_idx == val.dataset.class_to_idx == {"Mango": 0, "apple": 1, "zebra": 2}
    assert (len(train), len(val)) == (6, 4)
    for ds in (train, val):  # every item's label is the sorted position of its folder
        for i, (path, _) in enumerate(ds.dataset.samples):
            image, target = ds[i]
            assert target == classes.index(Path(path).parent.name)
            assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert sorted(classes[t] for t in train.dataset.targets) == sorted(c for c, n in counts.items() for _ in range(n))


def test_missing_root_and_splits(tmp_path):
    msg = _raise_message(image_folders, tmp_path / "nowhere")
    assert "nowhere" in msg and "DIR/train/<class>/*.jpg" in msg and "DIR/val/<class>/*.jpg" in msg

    _tree(tmp_path / "a", {"val": {"cat": 1}})
    msg = _raise_message(image_folders, tmp_path / "a")
    assert "'train'" in msg and "'val'" in msg and "DIR/train/<class>/*.jpg" in msg

    _tree(tmp_path / "b", {"train": {"cat": 1}, "validation": {"cat": 1}})
    msg = _raise_message(image_folders, tmp_path / "b")
    assert "expected a 'val' folder" in msg and "rename 'validation' to 'val'" in msg

    msg = _raise_message(find_classes, tmp_path / "b" / "test")
    assert "found nothing" in msg and "DIR/val/<class>/*.jpg" in msg


def test_split_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    _write(tmp_path / "train" / "loose.png")  # images straight in the split folder are not a class
    _tree(tmp_path, {"val": {"cat": 1}})
    msg = _raise_message(image_folders, tmp_path)
    assert "one sub-folder per class" in msg and str(tmp_path / "train") in msg


def test_empty_class_folders_are_named(tmp_path):
    _tree(tmp_path, {"train": {"cat": 2, "dog": 0}, "val": {"cat": 1, "dog": 1}})
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    msg = _raise_message(image_folders, tmp_path)
    assert "'dog'" in msg and "'cat'" not in msg and "1 class folder(s)" in msg and ".jpg" in msg

    _tree(tmp_path / "many", {"train": {f"c{i}": 0 for i in range(7)} | {"ok": 1}})
    msg = _raise_message(find_classes, tmp_path / "many" / "train")
    assert "7 class folder(s)" in msg and "'c0', 'c1', 'c2', 'c3', 'c4' and 2 more" in msg and "'c5'" not in msg

    _write(tmp_path / "nested" / "train" / "cat" / "sub" / "x.jpg")  # like ImageFolder, images may sit deeper
    assert find_classes(tmp_path / "nested" / "train") == ["cat"]


def test_val_classes_differing_from_train_are_listed(tmp_path):
    _tree(tmp_path, {"train": {"ant": 1, "bee": 1, "cat": 1}, "val": {"ant": 1, "bee": 1, "dog": 1, "eel": 1}})
    msg = _raise_message(image_folders, tmp_path)
    assert "1 only in train ('cat')" in msg and "2 only in val ('dog', 'eel')" in msg

    _tree(tmp_path / "sub", {"train": {"ant": 1, "bee": 1}, "val": {"ant": 1}})
    msg = _raise_message(image_folders, tmp_path / "sub")
    assert "1 only in train ('bee')" in msg and "0 only in val (none)" in msg


# --- images ------------------------------------------------------------------------------------------------------


def test_grayscale_palette_and_rgba_become_rgb(tmp_path):
    gray = _write(tmp_path / "train" / "a" / "gray.png", 8, "L")
    rgba = _write(tmp_path / "train" / "a" / "rgba.png", 8, "RGBA")
    pal = tmp_path / "train" / "b" / "pal.png"
    pal.parent.mkdir(parents=True)
    Image.open(rgba).convert("RGB").convert("P").save(pal)
    _write(tmp_path / "train" / "b" / "gray.jpg", 8, "L")
    _tree(tmp_path, {"val": {"a": 1, "b": 1}}, size=8)
    train, _, _ = image_folders(tmp_path)
    batch = [train[i] for i in range(len(train))]
    assert len(batch) == 4 and all(image.shape == (3, 8, 8) for image, _ in batch)

    g = np.asarray(load_rgb(gray))
    assert g.shape == (8, 8, 3) and (g == np.asarray(Image.open(gray))[..., None]).all()  # gray copied to R, G, B
    r = np.asarray(load_rgb(rgba))
    assert r.shape == (8, 8, 3) and (r == np.asarray(Image.open(rgba))[..., :3]).all()  # alpha dropped
    p = np.asarray(load_rgb(pal))
    assert p.shape == (8, 8, 3) and (p == np.asarray(Image.open(pal).convert("RGB"))).all()


@pytest.fixture
def corrupt_tree(tmp_path) -> tuple[Path, list[Path]]:
    """2 classes x 3 good 16x16 images in train, plus a truncated JPEG and a garbage-bytes .jpg."""
    _tree(tmp_path, {"train": {"cat": 3, "dog": 3}, "val": {"cat": 1, "dog": 1}})
    half = _truncated_jpeg(tmp_path / "train" / "cat" / "half.jpg")
    return tmp_path, [half, _garbage_jpeg(tmp_path / "train" / "dog" / "junk.jpg")]


def test_corrupt_files_warn_with_path_and_reason(corrupt_tree):
    root, (half, junk) = corrupt_tree
    train, _, _ = image_folders(root)
    paths = [p for p, _ in train.dataset.samples]
    with pytest.warns(CorruptImageWarning) as record:
        items = [train[paths.index(str(half))], train[paths.index(str(junk))]]
    assert items == [None, None]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert str(half) in messages[0] and "OSError: image file is truncated" in messages[0]
    assert str(junk) in messages[1] and "UnidentifiedImageError" in messages[1]
    image, target = train[paths.index(str(root / "train" / "dog" / "0.png"))]  # good files still load
    assert image.shape == (3, 16, 16) and target == 1


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.filterwarnings("ignore::ghostnets.data.CorruptImageWarning")
def test_corrupt_files_skipped_and_counted_through_dataloader(corrupt_tree, num_workers):
    root, _ = corrupt_tree
    train, _, classes = image_folders(root)
    assert len(train) == 8
    loader = DataLoader(train, batch_size=3, shuffle=False, num_workers=num_workers, collate_fn=collate_skipping)
    seen, skipped, targets = 0, 0, []
    for images, labels, n_skipped in loader:
        skipped += n_skipped
        if images is None:
            continue
        assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.float32
        assert labels.dtype == torch.long and labels.shape == (images.shape[0],)
        seen += images.shape[0]
        targets += labels.tolist()
    assert (seen, skipped) == (6, 2)
    assert sorted(targets) == [0, 0, 0, 1, 1, 1] and classes == ["cat", "dog"]


def test_collate_skipping_all_corrupt_and_mixed():
    assert collate_skipping([None, None, None]) == (None, None, 3)
    images, targets, n = collate_skipping([None, (torch.ones(3, 4, 4), 2), (torch.zeros(3, 4, 4), 0), None])
    assert n == 2 and images.shape == (2, 3, 4, 4) and targets.tolist() == [2, 0] and targets.dtype == torch.long
    assert images[0].eq(1).all() and images[1].eq(0).all()


class _Failing(Dataset):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise self.error


def test_skip_corrupt_names_items_and_lets_bugs_through():
    with pytest.warns(CorruptImageWarning, match=r"item 0 of _Failing: SyntaxError: bad marker"):
        assert SkipCorrupt(_Failing(SyntaxError("bad marker")))[0] is None
    with pytest.raises(RuntimeError, match="a transform bug"):  # not a file problem: never silently skipped
        SkipCorrupt(_Failing(RuntimeError("a transform bug")))[0]
