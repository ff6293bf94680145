"""Splits and loaders for training: a run's saved or new grouped splits, seeded loaders, the start line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.sampling import SeededEpochSampler
from sonofm.data.splits import load_split, save_split, split_samples, train_fraction
from sonofm.data.workers import data_workers
from sonofm.engine.config import TrainingConfig
from sonofm.errors import SonofmError
from sonofm.runs.run_folder import RunFolder


def load_or_make_splits(run: RunFolder, index: DatasetIndex, config: TrainingConfig,
                        resuming: bool) -> dict[str, list[Sample]]:
    """The run's saved splits when resuming, else those of ``config.split_file`` or new grouped splits; the training
    split cut to ``train_fraction``, then saved."""
    if resuming and run.split.is_file():
        return load_split(run.split, index)
    if config.split_file:
        splits = load_split(config.split_file, index)
    else:
        split_seed = config.seed if config.split_seed is None else config.split_seed
        splits = split_samples(index, ratios=config.split_ratios, seed=split_seed)
    if config.train_fraction < 1:
        splits["train"] = train_fraction(splits["train"], config.train_fraction, seed=config.seed)
    if not splits.get("train"):
        raise SonofmError(f"no training images in {config.data}")
    save_split(splits, run.split)
    return splits


def make_loader(dataset: Dataset, config: Any, train: bool, sources: Sequence[int] | None = None,
                source_weights: Sequence[float] | None = None) -> DataLoader:
    """A loader with ``config.batch_size``, ``num_workers`` (None: :func:`data_workers`; kept alive between epochs)
    and ``seed``, pinning memory for a GPU. Training loaders shuffle with a :class:`SeededEpochSampler` (exact
    resume; balanced over ``sources`` when given, one id per item, by ``source_weights``) and drop a ragged last
    batch."""
    size = len(dataset)
    sampler = SeededEpochSampler(size, config.seed, sources, source_weights) if train else None
    workers = data_workers(config.num_workers, processes_on_this_machine(config))
    return DataLoader(
        dataset, batch_size=config.batch_size, sampler=sampler,
        drop_last=train and size > config.batch_size, num_workers=workers, persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(config.seed),
    )


def processes_on_this_machine(config: Any) -> int:
    """Training processes per machine: ``--devices`` when it is a count (1 for ``auto`` and device lists)."""
    return int(config.devices) if str(config.devices).isdigit() else 1


def describe_start(index: DatasetIndex, splits: dict[str, list[Sample]], run: RunFolder, resuming: bool) -> str:
    """One line: start or resume, layout, classes, grouping, split sizes; then the grouping hint, if any."""
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in splits.items())
    verb = "resuming" if resuming else "starting"
    group = index.group_column or "none (each image its own group)"
    line = f"{verb} {run.path}: {index.layout} layout, classes {index.classes}, groups by {group}; {counts}"
    return f"{line}\nwarning: {index.grouping_hint}" if index.grouping_hint else line
