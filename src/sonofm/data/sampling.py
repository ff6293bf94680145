"""Training order and augmentation seeds that depend only on ``(seed, epoch)``, shared out over the processes of a
distributed run: exact resume, on one process or several."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
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
    the moment the DataLoader iterator is created nor the number of workers changes what a step sees. In a
    distributed run (a process group exists) each of the ``W`` ranks takes every ``W``-th key of the epoch's order,
    padded with its first keys to a multiple of ``W`` so every rank takes as many steps; sonofm's trainers therefore
    turn Lightning's own distributed sampler off.

    ``sources`` (one source id per position, e.g. the organ or archive an image came from) balances the epoch: it
    still has ``num_samples`` draws, split between the sources equally or in proportion to ``source_weights`` (one
    per distinct source id, in increasing id order; the remainder of the split to sources chosen at random); within
    a source the draws walk through fresh permutations of its positions, so a small source repeats its images and a
    large one is subsampled without repeats.
    """

    def __init__(self, num_samples: int, seed: int = 0, sources: Sequence[int] | None = None,
                 source_weights: Sequence[float] | None = None) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None
        self._members: list[torch.Tensor] | None = None
        if sources is not None:
            if len(sources) != num_samples:
                raise ValueError(f"{len(sources)} source ids for {num_samples} samples")
            ids = torch.as_tensor(list(sources), dtype=torch.long)
            self._members = [torch.nonzero(ids == source).flatten() for source in torch.unique(ids).tolist()]
            weights = [1.0] * len(self._members) if source_weights is None else list(source_weights)
            if len(weights) != len(self._members) or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"need one weight >= 0 per source ({len(self._members)}), not all 0; got {weights}")
            self._weights = torch.tensor(weights, dtype=torch.float64)

    def resume_at(self, epoch: int, position: int) -> None:
        """Make the next pass over ``epoch`` start at ``position`` of this rank's share (a run resumed mid-epoch)."""
        self._resume = (epoch, position)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        _, world = _rank_and_world()
        return -(-self.num_samples // world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self._members is None:
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = _balanced_order(self._members, self._weights, self.num_samples, generator)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator).tolist()
        keys = list(zip(order, seeds))
        rank, world = _rank_and_world()
        if world > 1:
            keys = (keys + keys[: len(self) * world - len(keys)])[rank::world]
        start = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        yield from keys[start:]


def _balanced_order(members: list[torch.Tensor], weights: torch.Tensor, total: int,
                    generator: torch.Generator) -> list[int]:
    """``total`` positions, a share of each group of ``members`` proportional to its weight (rounded down, the
    remainder one each to groups chosen at random among the weighted ones), shuffled together."""
    quota = torch.floor(total * weights / weights.sum()).long()
    weighted = [group for group in torch.randperm(len(members), generator=generator).tolist() if weights[group] > 0]
    quota[weighted[: total - int(quota.sum())]] += 1
    drawn = []
    for positions, need in zip(members, quota.tolist()):
        if need == 0:
            continue
        rounds = -(-need // len(positions))
        picks = torch.cat([torch.randperm(len(positions), generator=generator) for _ in range(rounds)])[:need]
        drawn.append(positions[picks])
    order = torch.cat(drawn)
    return order[torch.randperm(total, generator=generator)].tolist()


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
