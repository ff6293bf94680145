"""What every fine-tuning task shares: the common config fields, splits, loaders, the Trainer."""

from __future__ import annotations

import csv
import dataclasses
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, Dataset

from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.sampling import SeededEpochSampler
from sonofm.data.splits import load_split, save_split, split_samples, train_fraction
from sonofm.errors import SonofmError
from sonofm.tasks.hardware import HardwareConfig
from sonofm.runs.run_folder import RunFolder, checkpoint_entry
from sonofm.tasks.epoch_log import EpochCsvLog
from sonofm.tasks.figures import plot_training_curves
from sonofm.tasks.optim import OPTIMIZERS, OptimConfig
from sonofm.tasks.precision import PRECISIONS, resolve_precision

Echo = Callable[[str], None]


@dataclass
class TrainingConfig(HardwareConfig):
    """Options shared by every supervised training command on a labelled dataset (each config adds its own).

    ``seed`` seeds initialisation, data order, augmentation and the ``train_fraction`` subset; the train/val/test
    split uses ``split_seed`` (default: ``seed``), so experiments can vary the seed on one fixed split.
    ``split_file``, when set, gives that split instead: a ``name,split,group,label`` CSV as ``split.csv`` is written.
    """

    data: str = ""
    img_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    accumulate: int = 1
    train_fraction: float = 1.0
    seed: int = 0
    split_seed: int | None = None
    group_by: str | None = None
    split_ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_file: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)

    def checks(self) -> list[tuple[bool, str]]:
        """``(ok, message)`` pairs; a task config extends the list."""
        return [
            (bool(self.data), "--data is required"),
            (0 < self.train_fraction <= 1, f"--train-fraction must be in (0, 1], got {self.train_fraction}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.accumulate >= 1, f"accumulate must be >= 1, got {self.accumulate}"),
            (self.img_size >= 16 and self.img_size % 16 == 0, f"--img-size must be a multiple of 16, got {self.img_size}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (len(self.split_ratios) == 3 and abs(sum(self.split_ratios) - 1) < 1e-6, "split_ratios must be 3 numbers summing to 1"),
            (self.optim.optimizer in OPTIMIZERS,
             f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optim.optimizer!r}"),
        ]

    def validate(self) -> None:
        """Raise SonofmError for the first value outside its range."""
        for ok, message in self.checks():
            if not ok:
                raise SonofmError(message)


@dataclass
class FinetuneConfig(TrainingConfig):
    """A :class:`TrainingConfig` for a backbone from the model registry, from scratch or from ``weights``."""

    model: str = "usfm_vit_base_patch16"
    model_args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    drop_path: float = 0.1

    def resolved_optim(self) -> OptimConfig:
        """``optim`` with ``layer_decay`` resolved: 0.65 when fine-tuning from weights, none (1.0) from scratch."""
        if self.optim.layer_decay is not None:
            return self.optim
        return dataclasses.replace(self.optim, layer_decay=0.65 if self.weights else 1.0)


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


def make_loader(dataset: Dataset, config: Any, train: bool) -> DataLoader:
    """A loader with ``config.batch_size``, ``num_workers`` and ``seed``. Training loaders shuffle with a :class:`SeededEpochSampler` (exact resume) and drop a ragged last batch."""
    size = len(dataset)
    return DataLoader(
        dataset, batch_size=config.batch_size, sampler=SeededEpochSampler(size, config.seed) if train else None,
        drop_last=train and size > config.batch_size, num_workers=config.num_workers,
        pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(config.seed),
    )


def make_trainer(config: Any, callbacks: list[L.Callback]) -> L.Trainer:
    """A Trainer from a run config without logger banners: checkpoints and the CSV log come from ``callbacks``.

    ``config`` carries ``epochs``, ``accelerator``, ``devices``, ``strategy``, ``num_nodes``, ``precision``,
    ``accumulate``, ``optim.grad_clip`` and ``progress``; a ``max_steps`` attribute (pretraining), when set, bounds
    training by optimiser steps instead of epochs.
    """
    # Lightning's banners (hardware summary, logger tips) and a deprecation inside Lightning itself are noise here.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # a data set too small for a val split
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")  # resuming
    if config.progress:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=1)]
    devices: int | str = int(config.devices) if config.devices.isdigit() else config.devices
    max_steps = getattr(config, "max_steps", None)
    try:
        return L.Trainer(
            max_epochs=-1 if max_steps else config.epochs, max_steps=max_steps or -1,
            accelerator=config.accelerator, devices=devices, strategy=config.strategy, num_nodes=config.num_nodes,
            precision=resolve_precision(config.precision, config.accelerator),
            accumulate_grad_batches=config.accumulate, gradient_clip_val=config.optim.grad_clip or None,
            callbacks=callbacks, logger=False, enable_progress_bar=config.progress, enable_model_summary=False,
            num_sanity_val_steps=0, log_every_n_steps=1,
        )
    except (ValueError, MisconfigurationException, RuntimeError) as error:  # Lightning's words for bad hardware flags
        raise SonofmError(f"cannot set up training with accelerator={config.accelerator}, devices={config.devices}, "
                          f"strategy={config.strategy}: {str(error).splitlines()[0]}") from None


def describe_start(index: DatasetIndex, splits: dict[str, list[Sample]], run: RunFolder, resuming: bool) -> str:
    """One line: start or resume, layout, classes, grouping, split sizes."""
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in splits.items())
    verb = "resuming" if resuming else "starting"
    group = index.group_column or "none (each image its own group)"
    return f"{verb} {run.path}: {index.layout} layout, classes {index.classes}, groups by {group}; {counts}"


def fit_selecting_best(config: Any, run: RunFolder, module: L.LightningModule, loaders: dict[str, DataLoader],
                       monitor: str, callbacks: list[L.Callback] | None = None) -> tuple[L.Trainer, str | None]:
    """Train ``module`` on ``loaders["train"]`` (validating on ``loaders["val"]`` if present), resuming from
    ``last.ckpt``; keeps ``best.ckpt`` by the highest ``monitor`` and a ``log.csv`` row per epoch.

    Returns the trainer and the best checkpoint's path (None without validation: the last epoch counts).
    """
    has_val = "val" in loaders
    checkpoint = ModelCheckpoint(
        dirpath=run.checkpoints, filename="best", save_last=True, enable_version_counter=False,
        monitor=monitor if has_val else None, mode="max",
    )
    trainer = make_trainer(config, [checkpoint, EpochCsvLog(run.log), *(callbacks or [])])
    fit_resuming(trainer, module, run, loaders["train"], loaders.get("val"))
    best = run.checkpoints / "best.ckpt"
    return trainer, str(best) if has_val and best.is_file() else None


def fit_resuming(trainer: L.Trainer, module: L.LightningModule, run: RunFolder, train: DataLoader,
                 val: DataLoader | None = None) -> None:
    """``trainer.fit``, resuming from the run's ``last.ckpt`` when there is one.

    A :class:`SeededEpochSampler` is first set to the epoch the checkpoint resumes at: Lightning creates the resumed
    epoch's loader iterator before it calls ``set_epoch``, and loader workers draw their first keys at once, so
    without this the first resumed epoch would repeat epoch 0's order and augmentation.
    """
    last = run.last_checkpoint if run.last_checkpoint.is_file() else None
    if last is not None and isinstance(train.sampler, SeededEpochSampler):
        train.sampler.set_epoch(resumed_epoch(last))
    trainer.fit(module, train, val, ckpt_path=str(last) if last is not None else None)


def resumed_epoch(checkpoint: Path) -> int:
    """The epoch a Lightning checkpoint resumes training at (the value Lightning passes to ``set_epoch``)."""
    return int(checkpoint_entry(checkpoint, "loops")["fit_loop"]["epoch_progress"]["current"]["processed"])


def load_best_weights(module: L.LightningModule, best: str | None) -> None:
    """Load the weights of checkpoint ``best`` into ``module``; keep the last epoch's when there is none."""
    if best is not None:
        module.load_state_dict(checkpoint_entry(best, "state_dict"))


def checkpoint_epoch(path: str | None, epochs: int) -> float:
    """The epoch stored in checkpoint ``path``; the last epoch when there is none."""
    if path is None:
        return float(epochs - 1)
    return float(checkpoint_entry(path, "epoch"))


def write_training_curves(run: RunFolder, metric_keys: tuple[str, ...]) -> None:
    """``training_curves.png`` from ``log.csv`` (losses left, ``metric_keys`` right), when the log exists."""
    if run.log.is_file():
        with run.log.open(newline="", encoding="utf-8") as handle:
            plot_training_curves(list(csv.DictReader(handle)), run.path / "training_curves.png", metric_keys)
