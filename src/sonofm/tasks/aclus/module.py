"""Lightning module for ACLUS pretraining: LARS, warmup + cosine, corruption on the device, one EMA update per step."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import lightning as L
import torch
from timm.optim import Lars
from torch import Tensor

from sonofm.engine.module import steps_per_epoch
from sonofm.methods.aclus.corruption import corrupt
from sonofm.methods.aclus.model import AclusModel, ema_momentum


@dataclass
class LarsConfig:
    """LARS-SGD (``--set optim.<key>=...``): peak lr = ``lr`` x global batch / 256; 1-D parameters (biases, norms)
    get neither weight decay nor the trust-ratio adaptation. ``warmup_epochs`` of linear warmup (as a fraction of
    training when training is shorter), then cosine to 0."""

    lr: float = 0.3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    trust_coeff: float = 1e-3
    warmup_epochs: float = 3.0
    grad_clip: float = 0.0  # none, as the reference


class AclusModule(L.LightningModule):
    """Trains an :class:`AclusModel`; ``ema_updates`` counts target updates (one per optimiser step)."""

    def __init__(self, model: AclusModel, optim: LarsConfig, global_batch: int, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        self.optim_config = optim
        self.global_batch = global_batch
        self.seed = seed
        self.ema_updates = 0
        self._batch_start = 0.0

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(self.seed * 100_003 + self.current_epoch)

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(
            self.seed * 1_000_003 + self.global_step * 1_009 + batch_idx * 64 + self.global_rank)
        core = batch["core"]
        corrupted = corrupt(core, self.model.config.corruption, generator)
        losses = self.model.losses(batch["views"].transpose(0, 1), batch["view_masks"].transpose(0, 1), core,
                                   corrupted, batch["core_mask"], batch["core_valid"], generator)
        sync = self.trainer.world_size > 1
        for key in ("loss", "contrast", "context"):
            self.log(f"train/{key}", losses[key], on_step=True, on_epoch=True, prog_bar=(key == "loss"),
                     batch_size=len(core), sync_dist=sync)
        return losses["loss"]

    def on_train_batch_end(self, outputs, batch: dict[str, Tensor], batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._batch_start
        if elapsed > 0:
            self.log("img_per_s", len(batch["core"]) / elapsed, on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=len(batch["core"]))

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser step, then the target network's EMA update: exactly once per optimiser step."""
        super().optimizer_step(*args, **kwargs)
        total = int(self.trainer.estimated_stepping_batches)
        self.model.update_target(ema_momentum(self.global_step, total, self.model.config.ema_base))
        self.ema_updates += 1

    def configure_optimizers(self):
        config = self.optim_config
        trained = [p for name, p in self.model.named_parameters() if p.requires_grad]
        decayed = [p for p in trained if p.ndim > 1]
        plain = [p for p in trained if p.ndim <= 1]
        peak = config.lr * self.global_batch / 256
        optimizer = Lars([{"params": decayed, "weight_decay": config.weight_decay},
                          {"params": plain, "weight_decay": 0.0}],
                         lr=peak, momentum=config.momentum, trust_coeff=config.trust_coeff)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total // 2, round(config.warmup_epochs * steps_per_epoch(self.trainer, total)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine_to_zero(total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_cosine_to_zero(total_steps: int, warmup_steps: int):
    """LR multiplier per step: 0 at step 0 rising linearly to 1 over ``warmup_steps``, then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
