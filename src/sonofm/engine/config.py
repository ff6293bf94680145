"""The run configs training commands build on: hardware options, the schedule, then the fine-tuning and pretraining
fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from sonofm.engine.loggers import logger_checks
from sonofm.engine.optim import OPTIMIZERS, OptimConfig
from sonofm.engine.precision import PRECISIONS
from sonofm.errors import raise_first_failure
from sonofm.models import img_size_check

PRETRAINED_LAYER_DECAY = 0.65


@dataclass
class HardwareConfig:
    """Precision (``auto``: bf16 autocast where fast), data-loading workers, Lightning's accelerator, devices,
    strategy and nodes, whether BatchNorm layers share their batch statistics over the processes of a distributed
    run (``sync_batchnorm``), whether to show progress bars, and the experiment loggers beside ``log.csv``
    (``loggers``: csv, tensorboard, wandb, mlflow; see :mod:`sonofm.engine.loggers`)."""

    precision: str = "auto"
    num_workers: int | None = None  # None: from the cores (sonofm.data.workers.data_workers)
    accelerator: str = "auto"
    devices: str = "1"
    strategy: str = "auto"
    num_nodes: int = 1
    sync_batchnorm: bool = True
    progress: bool = True
    loggers: list[str] = field(default_factory=list)
    shards_models: ClassVar[bool] = False  # whether the command exports from FSDP shards (--strategy fsdp)

    def checks(self) -> list[tuple[bool, str]]:
        """``(ok, message)`` pairs; each config below extends the list."""
        return [(self.precision in PRECISIONS,
                 f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
                (self.num_workers is None or self.num_workers >= 0,
                 f"--num-workers must be >= 0, got {self.num_workers}"),
                (not self.strategy.startswith("fsdp") or self.shards_models,
                 f"--strategy {self.strategy}: only `pretrain mim` shards its model (FSDP); this command's models fit "
                 f"on one device, use --strategy ddp"),
                (not self.strategy.startswith("fsdp") or _cuda_usable(self.accelerator),
                 f"--strategy {self.strategy} shards the model over CUDA GPUs and none is usable here "
                 f"(accelerator={self.accelerator}); use --strategy ddp on CPUs"),
                *logger_checks(self.loggers)]

    def validate(self) -> None:
        """Raise SonofmError for the first value outside its range."""
        raise_first_failure(self.checks())


@dataclass
class ScheduleConfig(HardwareConfig):
    """Input size and training schedule, shared by fine-tuning and pretraining (each redeclares the defaults it
    changes). ``img_size`` must be a multiple of the model's patch size (``img_size_check``)."""

    img_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    accumulate: int = 1
    seed: int = 0

    def img_size_check(self) -> tuple[bool, str]:
        """``(ok, message)``: whether the model can tile ``img_size`` px inputs; each config with a model gives it."""
        raise NotImplementedError

    def checks(self) -> list[tuple[bool, str]]:
        return [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.accumulate >= 1, f"--accumulate must be >= 1, got {self.accumulate}"),
            self.img_size_check(),
            *super().checks(),
        ]


@dataclass
class TrainingConfig(ScheduleConfig):
    """Options shared by every supervised training command on a labelled dataset (each config adds its own).

    ``seed`` seeds initialisation, data order, augmentation and the ``train_fraction`` subset; the train/val/test
    split uses ``split_seed`` (default: ``seed``), so experiments can vary the seed on one fixed split.
    ``split_file``, when set, gives that split instead: a ``name,split,group,label`` CSV as ``split.csv`` is written.
    """

    data: str = ""
    train_fraction: float = 1.0
    split_seed: int | None = None
    group_by: str | None = None
    split_ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_file: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)

    def checks(self) -> list[tuple[bool, str]]:
        return [
            (bool(self.data), "--data is required"),
            (0 < self.train_fraction <= 1, f"--train-fraction must be in (0, 1], got {self.train_fraction}"),
            *super().checks(),
            (len(self.split_ratios) == 3 and abs(sum(self.split_ratios) - 1) < 1e-6, "split_ratios must be 3 numbers summing to 1"),
            (self.optim.optimizer in OPTIMIZERS,
             f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optim.optimizer!r}"),
        ]


@dataclass
class FinetuneConfig(TrainingConfig):
    """A :class:`TrainingConfig` for a backbone from the model registry, from scratch or from ``weights``."""

    model: str = "usfm_vit_base_patch16"
    model_args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    drop_path: float = 0.1

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from ``weights``: what every pretrained-or-scratch default follows."""
        return bool(self.weights)

    def img_size_check(self) -> tuple[bool, str]:
        return img_size_check(self.model, self.img_size)

    def resolved_optim(self) -> OptimConfig:
        """``optim`` with ``layer_decay`` resolved: 0.65 when ``pretrained``, none (1.0) from scratch."""
        if self.optim.layer_decay is not None:
            return self.optim
        return dataclasses.replace(self.optim, layer_decay=PRETRAINED_LAYER_DECAY if self.pretrained else 1.0)


@dataclass
class PretrainingConfig(ScheduleConfig):
    """Options shared by pretraining methods (each method's config adds its own).

    ``epochs`` or ``max_steps`` (optimiser steps; wins when set) bound training; ``checkpoint_every`` is in
    optimiser steps (``last.ckpt`` is also written at every epoch's end). ``balance="source"`` gives each source
    (``--data`` folder, or a packed folder's source) the same share of an epoch's draws (USFM's organ balance), a
    CSV file of ``source,weight`` rows shares them in proportion; None: every image once per epoch.
    """

    data: list[str] = field(default_factory=list)
    model: str = ""
    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 64
    checkpoint_every: int = 500
    balance: str | None = None

    def img_size_check(self) -> tuple[bool, str]:
        return img_size_check(self.model, self.img_size)

    def checks(self) -> list[tuple[bool, str]]:
        return [
            (bool(self.data), "--data needs at least one folder"),
            *super().checks(),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.balance in (None, "source") or str(self.balance).endswith(".csv"),
             f"--balance must be source or a .csv weights file, got {self.balance!r}"),
        ]


def _cuda_usable(accelerator: str) -> bool:
    """Whether ``accelerator`` can mean CUDA GPUs on this machine."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()

