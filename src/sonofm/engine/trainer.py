"""The Lightning Trainer every training command uses: building it, fitting with resume, reading the best epoch."""

from __future__ import annotations

import csv
import dataclasses
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader

from sonofm.data.sampling import SeededEpochSampler
from sonofm.engine.distributed import is_rank_zero
from sonofm.engine.epoch_lines import training_progress
from sonofm.engine.epoch_log import EpochCsvLog
from sonofm.engine.loggers import detach_loggers, run_loggers
from sonofm.engine.module import SeededTrainingModule
from sonofm.engine.optim import write_param_groups
from sonofm.engine.precision import resolve_precision
from sonofm.engine.ranks_agree import RanksAgree
from sonofm.engine.sync_batchnorm import GlobalBatchNormSync
from sonofm.errors import SonofmError
from sonofm.report.figures import plot_training_curves
from sonofm.runs.run_folder import RunFolder, checkpoint_entry

Echo = Callable[[str], None]

PARAM_GROUPS = "param_groups.csv"


def make_trainer(config: Any, callbacks: list[L.Callback], loggers: list[Logger] | None = None) -> L.Trainer:
    """A Trainer from a run config without logger banners: checkpoints and the CSV log come from ``callbacks``,
    experiment loggers (TensorBoard, ...) from ``loggers`` (:func:`~sonofm.engine.loggers.run_loggers`).

    ``config`` carries ``epochs``, ``accelerator``, ``devices``, ``strategy``, ``num_nodes``, ``precision``,
    ``accumulate``, ``optim.grad_clip``, ``sync_batchnorm`` and ``progress``; a ``max_steps`` attribute
    (pretraining), when set, bounds training by optimiser steps instead of epochs.
    """
    # Lightning's banners (hardware summary, logger tips) and a deprecation inside Lightning itself are noise here.
    for name in ("lightning.pytorch", "lightning.fabric"):  # also "Initializing distributed: GLOBAL_RANK ..."
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # a data set too small for a val split
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")  # resuming
    # Epoch means in log.csv are rank 0's own share of the data; evaluation runs once, on rank 0, over whole splits.
    warnings.filterwarnings("ignore", message=".*It is recommended to use `self.log\\(.*sync_dist=True.*")
    # Lightning's all_gather calls torch.distributed.nn.functional.all_gather, which torch 2.14 marks deprecated.
    warnings.filterwarnings("ignore", message=".*torch.distributed.nn.functional.all_gather is deprecated.*")
    callbacks = [*callbacks, RanksAgree()]
    if config.progress:
        callbacks = [*callbacks, training_progress()]
    devices: int | str = int(config.devices) if config.devices.isdigit() else config.devices
    on_cuda = config.accelerator in ("cuda", "gpu") or (config.accelerator == "auto" and torch.cuda.is_available())
    plugins = [GlobalBatchNormSync(on_cuda)] if config.sync_batchnorm else []  # used by DDP strategies only
    max_steps = getattr(config, "max_steps", None)
    try:
        return L.Trainer(
            max_epochs=-1 if max_steps else config.epochs, max_steps=max_steps or -1,
            accelerator=config.accelerator, devices=devices, strategy=config.strategy, num_nodes=config.num_nodes,
            precision=resolve_precision(config.precision, config.accelerator),
            accumulate_grad_batches=config.accumulate, gradient_clip_val=config.optim.grad_clip or None,
            callbacks=callbacks, plugins=plugins, logger=loggers or False, enable_progress_bar=config.progress,
            enable_model_summary=False,
            num_sanity_val_steps=0, log_every_n_steps=1,
            # Training loaders share out their epochs themselves (SeededEpochSampler: exact resume on any number of
            # ranks); validation reads every split whole on each rank, so its metrics equal a 1-process run's.
            use_distributed_sampler=False,
        )
    except (ValueError, MisconfigurationException, RuntimeError) as error:  # Lightning's words for bad hardware flags
        raise SonofmError(f"cannot set up training with accelerator={config.accelerator}, devices={config.devices}, "
                          f"strategy={config.strategy}: {str(error).splitlines()[0]}") from None


def evaluation_trainer(trainer: L.Trainer, config: Any) -> L.Trainer:
    """The trainer that evaluates a fitted model once over each whole split, on rank 0: ``trainer`` itself after a
    single-process fit; after a multi-process one a new single-process trainer, since the distributed sampler would
    pad the last batch with repeated samples and split the results over the ranks."""
    if trainer.world_size == 1:
        return trainer
    return make_trainer(dataclasses.replace(config, devices="1", strategy="auto", num_nodes=1), [])


def trained_model(trainer: L.Trainer, model: nn.Module, rebuild: Callable[[], nn.Module]) -> nn.Module | None:
    """After ``fit``: on global rank 0 the trained ``model`` (the LightningModule's ``model``) with every weight in
    place, None on the other ranks. Under FSDP each rank holds shards only: every rank must call this, the shards are
    gathered into a full state dict on rank 0 and loaded into a fresh model from ``rebuild``."""
    if not isinstance(trainer.strategy, FSDPStrategy):
        return model if trainer.is_global_zero else None
    state = trainer.strategy.lightning_module_state_dict()  # a collective; the full dict on rank 0 only
    if not trainer.is_global_zero:
        return None
    fresh = rebuild()
    fresh.load_state_dict({key.removeprefix("model."): value for key, value in state.items()
                           if key.startswith("model.")})
    return fresh


def fit_selecting_best(config: Any, run: RunFolder, module: L.LightningModule, loaders: dict[str, DataLoader],
                       monitor: str, callbacks: list[L.Callback] | None = None) -> tuple[L.Trainer, str | None]:
    """Train ``module`` on ``loaders["train"]`` (validating on ``loaders["val"]`` if present), resuming from
    ``last.ckpt``; keeps ``best.ckpt`` by the highest ``monitor`` and a ``log.csv`` row per epoch.

    Rank 0 first writes the run's ``param_groups.csv`` (each trainable tensor's layer id, LR scale, weight decay).
    Returns the trainer and the best checkpoint's path (None without validation: the last epoch counts).
    """
    if isinstance(module, SeededTrainingModule) and is_rank_zero():
        write_param_groups(module.model, module.optim_config, run.path / PARAM_GROUPS)
    has_val = "val" in loaders
    checkpoint = ModelCheckpoint(
        dirpath=run.checkpoints, filename="best", save_last=True, enable_version_counter=False,
        monitor=monitor if has_val else None, mode="max",
    )
    trainer = make_trainer(config, [checkpoint, EpochCsvLog(run.log), *(callbacks or [])], run_loggers(config, run))
    fit_resuming(trainer, module, run, loaders["train"], loaders.get("val"))
    best = run.checkpoints / "best.ckpt"
    return trainer, str(best) if has_val and best.is_file() else None


def fit_resuming(trainer: L.Trainer, module: L.LightningModule, run: RunFolder, train: DataLoader,
                 val: DataLoader | None = None) -> None:
    """``trainer.fit``, resuming from the run's ``last.ckpt`` when there is one; then the experiment loggers are
    detached (they record training only).

    A :class:`SeededEpochSampler` is first set to the epoch the checkpoint resumes at: Lightning creates the resumed
    epoch's loader iterator before it calls ``set_epoch``, and loader workers draw their first keys at once, so
    without this the first resumed epoch would repeat epoch 0's order and augmentation.
    """
    last = run.last_checkpoint if run.last_checkpoint.is_file() else None
    if last is not None and isinstance(train.sampler, SeededEpochSampler):
        train.sampler.set_epoch(resumed_epoch(last))
    trainer.fit(module, train, val, ckpt_path=str(last) if last is not None else None)
    detach_loggers(trainer)


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
