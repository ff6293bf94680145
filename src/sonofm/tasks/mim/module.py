"""Lightning module and callbacks for masked-image-modelling pretraining."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

from sonofm.engine.module import SeededTrainingModule
from sonofm.engine.optim import OptimConfig
from sonofm.methods.mim.model import MaskedImageModel
from sonofm.report.figures import plot_reconstructions

LOSS_KEYS = ("loss", "loss_spatial", "loss_frequency")


class MimModule(SeededTrainingModule):
    """Trains a :class:`MaskedImageModel`; logs its losses and the images/s of this process."""

    def __init__(self, model: MaskedImageModel, optim: OptimConfig, seed: int = 0):
        super().__init__(model, optim, seed)
        self._batch_start = 0.0

    def on_train_batch_start(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        outputs = self.model(batch)
        for key in LOSS_KEYS:
            if key in outputs:
                self.log(f"train/{key}", outputs[key], on_step=True, on_epoch=True, prog_bar=(key == "loss"),
                         batch_size=len(batch), sync_dist=self.trainer.world_size > 1)
        return outputs["loss"]

    def on_train_batch_end(self, outputs, batch: torch.Tensor, batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._batch_start
        if elapsed > 0:
            self.log("img_per_s", len(batch) / elapsed, on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=len(batch))


class ReconstructionFigures(L.Callback):
    """Every ``every_n_steps`` optimiser steps and at the end: original / encoder input / reconstruction figure.

    The same ``images`` ``(K, 3, S, S)`` and the same mask draw (``seed``) every time, so figures are comparable.
    Written by rank 0 to ``out_dir/step_NNNNNN.png`` (``final.png`` at the end).
    """

    def __init__(self, images: torch.Tensor, out_dir: Path, every_n_steps: int, seed: int = 0):
        self.images = images
        self.out_dir = Path(out_dir)
        self.every_n_steps = every_n_steps
        self.seed = seed
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self._last_step = step
            self.draw(trainer, pl_module, self.out_dir / f"step_{step:06d}.png", f"step {step}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer, pl_module, self.out_dir / "final.png", f"end of training (step {trainer.global_step})")

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule, path: Path, title: str) -> None:
        if not trainer.is_global_zero:
            return
        model: MaskedImageModel = pl_module.model
        was_training = model.training
        model.eval()
        images = self.images.to(pl_module.device)
        generator = torch.Generator(device=images.device).manual_seed(self.seed)
        with torch.no_grad():
            outputs = model(images, generator=generator)
        model.train(was_training)
        mask = outputs["pixel_mask"].cpu()
        seen = outputs["corrupted"].float().cpu()
        if model.config.fill == "token":  # the token replaces hidden patches after the pixels: draw them grey
            seen = seen * (1 - mask)
        plot_reconstructions(images.cpu(), seen, mask, outputs["reconstruction"].float().cpu(), path, title)
