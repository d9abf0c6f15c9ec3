"""Which samples each process sees at each step: one deterministic plan shared by every loader.

Epoch ``e`` shuffles the dataset with a generator seeded by ``(seed, e)``; global batch ``i`` is the slice
``perm[i*B:(i+1)*B]`` and process ``r`` of ``W`` takes its items ``r, r+W, ...``. So a 2-process run sees, per step,
exactly the images a 1-process run with 2 accumulation steps sees (its micro-batches are strided the same way),
and a resumed run skips the batches it has done without reading them.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator for everything random that a data epoch decides (order, placement, flips)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one process: shuffled per epoch, last incomplete global batch dropped."""

    def __init__(self, size: int, global_batch: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} must be a multiple of the number of processes {world_size}")
        if size < global_batch:
            raise ValueError(f"the dataset has {size} training images, fewer than one batch of {global_batch}; "
                             "lower batch_size or add data")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Plan epoch ``epoch``, beginning after its first ``start_step`` batches (for resuming)."""
        self.epoch, self.start_step = epoch, start_step

    def steps_per_epoch(self) -> int:
        return self.size // self.global_batch

    def __len__(self) -> int:
        return self.steps_per_epoch() - self.start_step

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        order, batch = self.order(), self.global_batch
        for step in range(self.start_step, self.steps_per_epoch()):
            yield order[step * batch:(step + 1) * batch][self.rank::self.world_size].tolist()


def shard_for_eval(size: int, rank: int, world_size: int) -> range:
    """The evaluation indices of process ``rank``: every image exactly once over all processes."""
    return range(rank, size, world_size)
