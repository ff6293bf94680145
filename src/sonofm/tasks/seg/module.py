"""Lightning module for segmentation fine-tuning: the Segmenter's own loss, Dice/IoU on validation each epoch."""

from __future__ import annotations

import torch

from sonofm.engine.module import SeededTrainingModule
from sonofm.engine.optim import OptimConfig
from sonofm.metrics.segmentation import SegmentationMetrics
from sonofm.models.segmenter import Segmenter

Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, 3, S, S), label maps int64 (B, S, S)


class SegmentationModule(SeededTrainingModule):
    """Trains a :class:`Segmenter`.

    Validation runs at the model's input size on resized masks (cheap, for model selection: ``val/dice``,
    ``val/iou``, ``val/pixel_accuracy``, ``val/loss``); the reported metrics are computed afterwards at each image's
    own size (``finetune_seg``). Under DDP each rank scores its share of the batches and the per-image scores are
    brought together, so the metrics are those of one process.
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
        if not self.evaluates(batch_idx):
            return
        images, masks = batch
        outputs = self.model(images)
        self._val_losses.append(self.model.loss(outputs, masks)["loss"].detach().cpu() * len(masks))
        scores = self.model.class_scores(outputs, masks.shape[-2:])
        self._val_metrics.update(scores.argmax(dim=1).cpu(), masks.cpu())

    def on_validation_epoch_end(self) -> None:
        parts = self.from_every_rank((self._val_metrics, self._val_losses))
        self._val_metrics = SegmentationMetrics(self.class_names, self.model.ignore_index, compute_hd95=False)
        self._val_losses = []
        metrics = SegmentationMetrics.merged([rank_metrics for rank_metrics, _ in parts])
        losses = [loss for _, rank_losses in parts for loss in rank_losses]
        seen = len(metrics)
        if not seen:
            return
        values = metrics.compute()
        self.log("val/loss", torch.stack(losses).sum() / seen)
        for key in ("dice", "iou", "pixel_accuracy"):
            self.log(f"val/{key}", values[key], prog_bar=(key == "dice"))
