"""The Lightning base module of every training command: per-epoch reseeding and the shared optimiser schedule."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from sonofm.data.sampling import SeededEpochSampler
from sonofm.engine.optim import OptimConfig, build_optimizer, warmup_cosine


class SeededTrainingModule(L.LightningModule):
    """AdamW (or ``optim.optimizer``) + layer-wise LR decay + warmup-cosine per optimiser step, and reseeding at every
    epoch.

    ``seed``: every epoch reseeds the global RNG (drop path, dropout, MIM masks) with ``seed``, the epoch and the
    global rank (each rank draws its own masks; rank 0 draws a 1-process run's), so a resumed run draws the same masks
    as an uninterrupted one (data order and augmentation are seeded by ``SeededEpochSampler``).
    The wrapped ``model`` must offer ``layer_id(name)`` and ``num_layer_ids``. Warmup lasts
    ``optim.warmup_epochs`` epochs' worth of optimiser steps, also when training is bounded by ``max_steps``.
    """

    def __init__(self, model: nn.Module, optim: OptimConfig, seed: int = 0):
        super().__init__()
        self.model = model
        self.optim_config = optim
        self.seed = seed

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(self.seed * 100_003 + self.current_epoch + 1_000_003 * self.global_rank)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep every rank's global RNG (drop path, masks) so a run resumed from a mid-epoch checkpoint draws what it
        would have (called on every rank; rank 0 writes the file)."""
        states = self.from_every_rank(torch.get_rng_state())
        checkpoint["torch_rng_state"] = states[0]
        checkpoint["torch_rng_state_per_rank"] = states

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("torch_rng_state_per_rank", [])
        if len(states) == self.trainer.world_size:
            torch.set_rng_state(states[self.global_rank])
        elif "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def evaluates(self, batch_idx: int) -> bool:
        """Whether this rank evaluates validation/test batch ``batch_idx``: every rank reads the whole split (no
        padded, repeated samples) and evaluates every ``W``-th batch of it; :meth:`from_every_rank` then brings the
        per-image results together, so metrics cover each image exactly once."""
        return batch_idx % self.trainer.world_size == self.trainer.global_rank

    def from_every_rank(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (a collective: every rank calls it); ``[value]`` on one process."""
        if self.trainer.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by the global gradient norm; under FSDP through the sharded root module's ``clip_grad_norm_`` (the
        norm over every shard), since Lightning's FSDP precision plugin refuses norm clipping."""
        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

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


class MidEpochResume(L.Callback):
    """Resuming from a step checkpoint taken mid-epoch: the training sampler skips the batches the epoch already saw
    (on each rank, in its own share of the epoch)."""

    def __init__(self, sampler: SeededEpochSampler, batch_size: int) -> None:
        self.sampler = sampler
        self.batch_size = batch_size

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        seen = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
        if seen:
            self.sampler.resume_at(int(checkpoint["epoch"]), seen * self.batch_size)
