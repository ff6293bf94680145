"""Lightning module for image classification fine-tuning (full, partial or linear probing)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sonofm.engine.module import SeededTrainingModule
from sonofm.engine.optim import OptimConfig
from sonofm.metrics.classification import classification_metrics
from sonofm.models.classifier import ImageClassifier
from sonofm.tasks.cls.freezing import eval_frozen_modules, freeze_backbone


class ClassificationModule(SeededTrainingModule):
    """Trains an :class:`ImageClassifier`; collects whole-split probabilities for metrics at each epoch's end.

    Args:
        model: the classifier.
        class_names: C class names.
        optim: optimiser settings.
        mode: ``"full"`` (all parameters, layer-wise LR decay), ``"partial"`` (the backbone's last stage and the
            head; the rest frozen, in eval mode) or ``"linear"`` (frozen backbone, eval mode).
        label_smoothing: cross-entropy label smoothing.
        class_weights: optional (C,) loss weights (inverse class frequency) for imbalanced data.
        seed: base seed of the per-epoch reseeding (see :class:`SeededTrainingModule`).
    """

    def __init__(
        self,
        model: ImageClassifier,
        class_names: list[str],
        optim: OptimConfig,
        mode: str = "full",
        label_smoothing: float = 0.1,
        class_weights: torch.Tensor | None = None,
        seed: int = 0,
    ):
        super().__init__(model, optim, seed)
        self.class_names = class_names
        self.mode = mode
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(len(class_names)))
        freeze_backbone(self.model.backbone, mode)
        self._outputs: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {  # (batch index, probs, labels)
            "val": [], "test": []}
        self.last_results: dict[str, dict[str, torch.Tensor]] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.mode != "full":
            eval_frozen_modules(self.model.backbone)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(
            logits.float(), labels, weight=self.class_weights, label_smoothing=self.label_smoothing
        )
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log("train/accuracy", accuracy, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._collect("val", batch, batch_idx)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._collect("test", batch, batch_idx)

    def _collect(self, split: str, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not self.evaluates(batch_idx):
            return
        images, labels = batch
        probs = self.model(images).float().softmax(dim=1)
        self._outputs[split].append((batch_idx, probs.detach().cpu(), labels.detach().cpu()))

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def _finish(self, split: str) -> None:
        outputs = sorted((entry for part in self.from_every_rank(self._outputs[split]) for entry in part),
                         key=lambda entry: entry[0])
        self._outputs[split] = []
        if not outputs or self.trainer.sanity_checking:
            return
        probs = torch.cat([p for _, p, _ in outputs])
        labels = torch.cat([y for _, _, y in outputs])
        loss = F.nll_loss(probs.clamp_min(1e-8).log(), labels)
        metrics = classification_metrics(probs.cpu(), labels.cpu(), self.class_names)
        self.last_results[split] = {"probs": probs.cpu(), "labels": labels.cpu()}
        self.log(f"{split}/loss", loss, sync_dist=False)
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "auroc"):
            self.log(f"{split}/{key}", metrics[key], prog_bar=(key == "balanced_accuracy"), sync_dist=False)


def inverse_frequency_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """(C,) weights ``N / (C * count_c)`` (1 for absent classes), so every class contributes equally to the loss."""
    counts = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=num_classes).float()
    weights = len(labels) / (num_classes * counts.clamp_min(1))
    weights[counts == 0] = 1.0
    return weights

