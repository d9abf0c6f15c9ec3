"""The data of a run: the bundled Fashion-MNIST (or a file in its format) in memory, or an ImageFolder tree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import transforms as T

from ..data.batches import GlobalBatchSampler, shard_for_eval
from ..data.fashion_mnist import CLASS_NAMES, FashionMNIST
from ..data.image_folder import DatasetError, collate_skipping, image_folder_split, image_folders
from ..data.in_memory import InMemoryLoader
from ..data.transforms import InputSpec, fashion_mnist_input, rgb_to_bgr
from .config import TrainConfig
from .distributed import Distributed

Batch = tuple[torch.Tensor | None, torch.Tensor | None, int]  # images, targets, corrupt files skipped


class _Batches:
    """Uniform ``(images, targets, skipped)`` batches over either kind of loader, with ``set_epoch``."""

    def __init__(self, loader, sampler: GlobalBatchSampler | None = None) -> None:
        self.loader, self.sampler = loader, sampler

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        target = self.sampler if self.sampler is not None else self.loader
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch, start_step)
        generator = getattr(self.loader, "generator", None)
        if generator is not None and self.sampler is not None:  # workers' augmentation seeds: per rank and epoch
            generator.manual_seed(hash((self.sampler.seed, self.sampler.rank, epoch, start_step)) % 2**63)

    def steps_per_epoch(self) -> int:
        if self.sampler is not None:
            return self.sampler.steps_per_epoch()
        return self.loader.steps_per_epoch() if hasattr(self.loader, "steps_per_epoch") else len(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            yield batch if len(batch) == 3 else (batch[0], batch[1], 0)


@dataclass
class RunData:
    train: _Batches
    eval: _Batches
    class_names: list[str]
    input_spec: InputSpec
    description: str


def _in_memory(file: Path | None, config: TrainConfig, context: Distributed) -> RunData:
    train, test = FashionMNIST("train", file=file), FashionMNIST("test", file=file)
    if len(train) == 0 or len(test) == 0:
        raise DatasetError(f"{file} holds {len(train)} training and {len(test)} test images; both must be non-empty")
    try:
        spec = fashion_mnist_input(config.bundled_size, config.bundled_channels)
    except ValueError as e:
        raise DatasetError(f"{e} (recipe fields bundled_size / bundled_channels)") from None
    eval_batch = max(256, config.batch_size // context.world_size)
    train_x, train_y = train.as_tensors()
    test_x, test_y = test.as_tensors()
    common = dict(seed=config.seed, rank=context.rank, world_size=context.world_size)
    train_loader = InMemoryLoader(train_x, train_y, spec, batch_size=config.batch_size, train=True,
                                  hflip=config.hflip, **common)
    eval_loader = InMemoryLoader(test_x, test_y, spec, batch_size=eval_batch, train=False, **common)
    where = file or "the bundled Fashion-MNIST cache"
    return RunData(_Batches(train_loader), _Batches(eval_loader), list(CLASS_NAMES), spec,
                   f"Fashion-MNIST from {where}: {len(train)} training / {len(test)} test images, 10 classes, "
                   f"28x28 grayscale placed in a 32x32 canvas" + (
                       f", scaled to {spec.size} px as {spec.channels} channel(s)" if spec.size != 32 or
                       spec.channels != 1 else ""))


def _image_folder(root: Path, config: TrainConfig, context: Distributed) -> RunData:
    from timm.data import create_transform

    from ..registry import eval_transform_for

    card = eval_transform_for(config.model)
    spec = InputSpec.from_crop_pct(config.img_size, config.crop_pct, config.interpolation, card.mean, card.std,
                                   bgr=card.bgr)
    # timm normalises RGB: a BGR model's mean/std (in BGR order) go in reversed, and the channels are flipped after
    order = slice(None, None, -1) if spec.bgr else slice(None)
    train_transform = create_transform(
        config.img_size, is_training=True, hflip=config.hflip, color_jitter=config.color_jitter,
        auto_augment=config.auto_augment, interpolation=config.interpolation, mean=spec.mean[order],
        std=spec.std[order], re_prob=config.re_prob, re_mode=config.re_mode)
    if spec.bgr:
        train_transform = T.Compose([train_transform, T.Lambda(rgb_to_bgr)])
    train_set, val_set, classes = image_folders(root, train_transform, spec.transform())
    sampler = GlobalBatchSampler(len(train_set), config.batch_size, seed=config.seed, rank=context.rank,
                                 world_size=context.world_size)
    generator = torch.Generator().manual_seed(config.seed)
    pin = context.device.type == "cuda"
    train_loader = DataLoader(train_set, batch_sampler=sampler, num_workers=config.workers,
                              collate_fn=collate_skipping, pin_memory=pin, generator=generator,
                              persistent_workers=False)
    shard = Subset(val_set, list(shard_for_eval(len(val_set), context.rank, context.world_size)))
    eval_loader = DataLoader(shard, batch_size=max(1, config.batch_size // context.world_size),
                             num_workers=config.workers, collate_fn=collate_skipping, pin_memory=pin)
    return RunData(_Batches(train_loader, sampler), _Batches(eval_loader), classes, spec,
                   f"image folders under {root}: {len(train_set)} training / {len(val_set)} validation images, "
                   f"{len(classes)} classes, {config.img_size} px")


def build_data(config: TrainConfig, context: Distributed) -> RunData:
    """The loaders ``config.data`` names: nothing (the bundled dataset), a ``.npz`` in its format, or a folder."""
    if config.data is None:
        return _in_memory(None, config, context)
    path = Path(config.data).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise DatasetError(f"data file {path} does not exist")
        return _in_memory(path, config, context)
    return _image_folder(path, config, context)


def _is_bundled_input(spec: InputSpec) -> bool:
    try:
        return spec == fashion_mnist_input(spec.size, spec.channels)
    except ValueError:
        return False


def evaluation_data(data: str | None, spec: InputSpec | None, batch_size: int, workers: int,
                    context: Distributed) -> tuple[_Batches, list[str]]:
    """The held-out split alone (for ``ghostnets eval``): Fashion-MNIST's test split or ``DIR/val``."""
    config = TrainConfig(data=data, batch_size=batch_size, workers=workers)
    if data is None or Path(data).suffix == ".npz":
        if spec is not None and _is_bundled_input(spec):  # a model trained on the bundled data, at any scale
            config.bundled_size, config.bundled_channels = spec.size, spec.channels
        run = _in_memory(Path(data) if data else None, config, context)
        return run.eval, run.class_names
    split = Path(data) / "val"
    if not split.is_dir():
        raise DatasetError(f"expected held-out images in {split}/<class>/*; found no such folder")
    val_set, classes = image_folder_split(split, spec.transform())
    loader = DataLoader(Subset(val_set, list(shard_for_eval(len(val_set), context.rank, context.world_size))),
                        batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping)
    return _Batches(loader), classes
