"""Training order and augmentation seeds that depend only on ``(seed, epoch)``: exact resume at epoch boundaries."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

# A dataset key: a plain position, or (position, augmentation seed) from SeededEpochSampler.
ItemKey = int | tuple[int, int]


def item_generator(key: ItemKey) -> tuple[int, torch.Generator | None]:
    """Split a dataset key into its position and a generator seeded for that item (None for a plain position)."""
    if isinstance(key, tuple):
        position, seed = key
        return position, torch.Generator().manual_seed(seed)
    return key, None


class SeededEpochSampler(Sampler[tuple[int, int]]):
    """Shuffles ``num_samples`` positions anew each epoch and pairs each with its own augmentation seed.

    Both derive from ``(seed, epoch)`` alone (Lightning calls :meth:`set_epoch`), not from the global RNG, so neither
    the moment the DataLoader iterator is created nor the number of workers changes what a step sees.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, position: int) -> None:
        """Make the next pass over ``epoch`` start at ``position`` of its order (a run resumed mid-epoch)."""
        self._resume = (epoch, position)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator).tolist()
        start = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        yield from list(zip(order, seeds))[start:]
