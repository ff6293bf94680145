"""Lightning module for segmentation fine-tuning: the Segmenter's own loss, Dice/IoU on validation each epoch."""

from __future__ import annotations

import torch

from sonofm.metrics.segmentation import SegmentationMetrics
from sonofm.models.segmenter import Segmenter
from sonofm.engine.module import SeededTrainingModule
from sonofm.engine.optim import OptimConfig

Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, 3, S, S), label maps int64 (B, S, S)


class SegmentationModule(SeededTrainingModule):
    """Trains a :class:`Segmenter`.

    Validation runs at the model's input size on resized masks (cheap, for model selection: ``val/dice``,
    ``val/iou``, ``val/pixel_accuracy``, ``val/loss``); the reported metrics are computed afterwards at each image's
    own size (``finetune_seg``). Under DDP the per-rank values are averaged.
    """

    def __init__(self, model: Segmenter, class_names: list[str], optim: OptimConfig, seed: int = 0):
        super().__init__(model, optim, seed)
        self.class_names = class_names
        self._val_metrics = SegmentationMetrics(class_names, model.ignore_index, compute_hd95=False)
        self._val_losses: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> class scores (B, K, S, S)."""
        return self.model.predict(images)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        images, masks = batch
        losses = self.model.loss(self.model(images), masks)
        self.log("train/loss", losses["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=len(masks))
        for name, value in losses.items():
            if name != "loss":
                self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=len(masks))
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images, masks = batch
        outputs = self.model(images)
        self._val_losses.append(self.model.loss(outputs, masks)["loss"].detach() * len(masks))
        scores = self.model.class_scores(outputs, masks.shape[-2:])
        self._val_metrics.update(scores.argmax(dim=1).cpu(), masks.cpu())

    def on_validation_epoch_end(self) -> None:
        seen = len(self._val_metrics)
        if not seen:
            return
        values = self._val_metrics.compute()
        loss = torch.stack(self._val_losses).sum() / seen
        self._val_metrics = SegmentationMetrics(self.class_names, self.model.ignore_index, compute_hd95=False)
        self._val_losses = []
        sync = self.trainer.world_size > 1
        self.log("val/loss", loss, sync_dist=sync)
        for key in ("dice", "iou", "pixel_accuracy"):
            self.log(f"val/{key}", values[key], prog_bar=(key == "dice"), sync_dist=sync)
