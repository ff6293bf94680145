"""The Lightning base module of every training command: per-epoch reseeding and the shared optimiser schedule."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from sonofm.tasks.optim import OptimConfig, build_optimizer, warmup_cosine


class SeededTrainingModule(L.LightningModule):
    """AdamW (or ``optim.optimizer``) + layer-wise LR decay + warmup-cosine per optimiser step, and reseeding at every
    epoch.

    ``seed``: every epoch reseeds the global RNG (drop path, dropout) with ``seed`` and the epoch, so a resumed run
    draws the same masks as an uninterrupted one (data order and augmentation are seeded by ``SeededEpochSampler``).
    The wrapped ``model`` must offer ``layer_id(name)`` and ``num_layer_ids``. Warmup lasts
    ``optim.warmup_epochs`` epochs' worth of optimiser steps, also when training is bounded by ``max_steps``.
    """

    def __init__(self, model: nn.Module, optim: OptimConfig, seed: int = 0):
        super().__init__()
        self.model = model
        self.optim_config = optim
        self.seed = seed

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(self.seed * 100_003 + self.current_epoch)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optim_config)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = round(self.optim_config.warmup_epochs * steps_per_epoch(self.trainer, total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total, warmup, self.optim_config.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def steps_per_epoch(trainer: L.Trainer, total: int) -> float:
    """Optimiser steps per epoch of ``trainer`` training ``total`` steps in all (epoch- or ``max_steps``-bounded)."""
    if trainer.max_epochs is not None and trainer.max_epochs > 0:
        return total / trainer.max_epochs
    if trainer.train_dataloader is None:
        trainer.fit_loop.setup_data()
    return math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
