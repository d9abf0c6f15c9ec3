"""Batches straight from tensors in memory, augmented on the batch: the fast path for the bundled dataset.

Per-image PIL transforms would cost more than the model on 28x28 images; here each epoch draws every image's
placement (a random offset inside the padded canvas) and flip once, from the epoch's generator, so the batches do
not depend on how many processes share the epoch or where a resumed run begins.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .batches import GlobalBatchSampler, epoch_generator, shard_for_eval
from .transforms import InputSpec, normalize


def place(images: torch.Tensor, size: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Each (C, h, w) image pasted into a zero (C, size, size) canvas at its own ``top``/``left`` offset."""
    n, c, h, w = images.shape
    canvas = images.new_zeros(n, c, size, size)
    rows = top.view(n, 1) + torch.arange(h).view(1, h)  # (n, h)
    cols = left.view(n, 1) + torch.arange(w).view(1, w)  # (n, w)
    batch = torch.arange(n).view(n, 1, 1)
    canvas.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)] = images.permute(0, 2, 3, 1)
    return canvas


class InMemoryLoader:
    """Training batches ``(images, targets)`` of one process, for images held as a float (N, C, h, w) tensor in [0, 1].

    ``train=True``: random placement inside ``spec.size`` (up to ``2*spec.pad`` pixels each way) and horizontal
    flips with probability ``hflip``; ``train=False``: centred, every image once (sharded over processes). Images
    smaller than the spec's crop (``size - 2*pad``) are up-sampled bilinearly to it, as the spec's PIL pipeline does,
    and grayscale images are repeated to ``spec.channels``.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, spec: InputSpec, *, batch_size: int,
                 train: bool, seed: int = 0, rank: int = 0, world_size: int = 1, hflip: float = 0.5) -> None:
        self.images, self.targets, self.spec, self.train, self.hflip = images, targets, spec, train, hflip
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.sampler = GlobalBatchSampler(len(targets), batch_size, seed=seed, rank=rank, world_size=world_size) \
            if train else None
        self.epoch = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch, start_step)

    def steps_per_epoch(self) -> int:
        if self.sampler is not None:
            return self.sampler.steps_per_epoch()
        return -(-len(shard_for_eval(len(self.targets), self.rank, self.world_size)) // self.batch_size)

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else self.steps_per_epoch()

    def _batch(self, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor):
        images = self.images[index]
        side = self.spec.size - 2 * self.spec.pad
        if images.shape[-1] != side:  # a canvas larger than the images' own (fashion_mnist_input): up-sample first
            images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False).clamp_(0, 1)
        if images.shape[1] != self.spec.channels:  # grayscale as identical channels (the spec's RGB input)
            images = images.expand(-1, self.spec.channels, -1, -1)
        images = place(images, self.spec.size, top[index], left[index])
        if flip is not None and flip[index].any():
            rows = flip[index]
            images[rows] = images[rows].flip(-1)
        return normalize(images, self.spec), self.targets[index]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, room = len(self.targets), 2 * self.spec.pad
        if self.sampler is None:
            centre = torch.full((n,), self.spec.pad, dtype=torch.long)
            shard = torch.tensor(shard_for_eval(n, self.rank, self.world_size))
            for start in range(0, len(shard), self.batch_size):
                yield self._batch(shard[start:start + self.batch_size], centre, centre, None)
            return
        generator = epoch_generator(self.seed + 1, self.epoch)  # apart from the sampler's order
        top = torch.randint(0, room + 1, (n,), generator=generator)
        left = torch.randint(0, room + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < self.hflip
        for indices in self.sampler:
            yield self._batch(torch.tensor(indices), top, left, flip)
