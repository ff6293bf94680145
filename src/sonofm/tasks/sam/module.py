"""Lightning module for both A-SAM stages: prompted adaptation and automatic-prompter training."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from sonofm.engine.module import SeededTrainingModule
from sonofm.engine.optim import OptimConfig
from sonofm.metrics.segmentation import SegmentationMetrics
from sonofm.sam.adapted import AdaptedSam
from sonofm.sam.losses import bce_dice_loss
from sonofm.sam.prompts import prompts_from_masks

Batch = tuple[Tensor, Tensor]  # images (B, 3, S, S) or cached embeddings (B, C, h, w); masks int64 (B, S, S)
STAGES = ("adapt", "prompter")


@dataclass(frozen=True)
class SamLossConfig:
    bce_weight: float = 0.2
    dice_weight: float = 0.8
    pos_weight: float = 2.0


@dataclass(frozen=True)
class PromptSampling:
    """How training prompts are drawn (stage ``adapt``): one kind per step, drawn from ``kinds``."""

    kinds: tuple[str, ...] = ("point", "box")
    num_clicks: int = 1
    box_jitter: float = 0.1


class SamModule(SeededTrainingModule):
    """Trains an :class:`AdaptedSam`.

    ``stage="adapt"``: one prompt per (image, class present), loss on the prompted mask; validation uses fixed
    prompts of every kind (``val/dice`` = mean Dice over prompts, ``val/dice_<kind>`` per kind).
    ``stage="prompter"``: every class of every image through the prompter, loss per class mask (absent classes
    must come out empty); validation scores the argmax anatomy map (``val/dice``, ``val/iou``).
    ``cached``: batches hold image embeddings instead of images (frozen encoder). Prompt draws are seeded by
    ``seed`` and the global step, so a resumed run draws what an uninterrupted one would.
    """

    def __init__(self, model: AdaptedSam, stage: str, optim: OptimConfig, loss: SamLossConfig,
                 sampling: PromptSampling, ignore_index: int = 255, cached: bool = False, seed: int = 0) -> None:
        super().__init__(model, optim, seed)
        self.stage = stage
        self.loss_config = loss
        self.sampling = sampling
        self.ignore_index = ignore_index
        self.cached = cached
        self.num_classes = len(model.classes)
        model.set_trainable(stage)
        model.train()
        self._frozen_encoder = stage == "prompter" or model.adapter == "frozen"
        self._reset_validation()

    def _reset_validation(self) -> None:
        self._dice_sums = {kind: torch.zeros(2) for kind in self.sampling.kinds}
        self._val_metrics = SegmentationMetrics(self.model.classes, self.ignore_index, compute_hd95=False)

    def embeddings(self, inputs: Tensor) -> Tensor:
        """Image embeddings of a batch: the batch itself when cached, else the encoder's output."""
        if self.cached:
            return inputs
        context = torch.no_grad() if self._frozen_encoder else contextlib.nullcontext()
        with context:
            return self.model.embed(inputs)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        inputs, masks = batch
        embeddings = self.embeddings(inputs)
        if self.stage == "adapt":
            losses = self._prompted_loss(embeddings, masks)
        else:
            losses = self._class_loss(embeddings, masks)
        self.log("train/loss", losses["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=len(masks))
        for name in ("bce", "dice_loss"):
            self.log(f"train/{name}", losses[name], on_step=False, on_epoch=True, batch_size=len(masks))
        return losses["loss"]

    def _prompted_loss(self, embeddings: Tensor, masks: Tensor) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step * 64 + self.global_rank)
        kinds = self.sampling.kinds
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
        prompts = prompts_from_masks(masks, self.num_classes, kind, generator, self.sampling.num_clicks,
                                     self.sampling.box_jitter)
        if not len(prompts):  # no foreground anywhere in the batch: a zero loss that still reaches every parameter
            zero = sum(param.sum() for param in self.model.parameters() if param.requires_grad) * 0.0
            return {"loss": zero, "bce": zero.detach(), "dice_loss": zero.detach()}
        logits = self.model.prompted_logits(embeddings, prompts)
        return bce_dice_loss(logits, prompts.targets(masks), **vars(self.loss_config))

    def _class_loss(self, embeddings: Tensor, masks: Tensor) -> dict[str, Tensor]:
        logits = self.model.class_logits(embeddings)  # (B, F, S, S)
        classes = torch.arange(1, self.num_classes, device=masks.device).view(1, -1, 1, 1)
        targets = (masks.unsqueeze(1) == classes).float()
        valid = (masks != self.ignore_index).unsqueeze(1).expand_as(targets)
        return bce_dice_loss(logits.flatten(0, 1), targets.flatten(0, 1), valid=valid.flatten(0, 1),
                             **vars(self.loss_config))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if not self.evaluates(batch_idx):
            return
        inputs, masks = batch
        embeddings = self.embeddings(inputs)
        if self.stage == "prompter":
            scores = torch.cat([torch.full_like(masks[:, None], 0.5, dtype=torch.float32),
                                self.model.class_logits(embeddings).float().sigmoid()], dim=1)
            self._val_metrics.update(scores.argmax(dim=1).cpu(), masks.cpu())
            return
        for kind in self.sampling.kinds:
            prompts = prompts_from_masks(masks, self.num_classes, kind)
            if not len(prompts):
                continue
            predicted = self.model.prompted_logits(embeddings, prompts) > 0
            truth = prompts.targets(masks) > 0
            intersection = (predicted & truth).flatten(1).sum(dim=1)
            total = predicted.flatten(1).sum(dim=1) + truth.flatten(1).sum(dim=1)
            dice = (2 * intersection / total.clamp(min=1)).float()
            self._dice_sums[kind] += torch.stack([dice.sum().cpu(), torch.tensor(float(len(dice)))])

    def on_validation_epoch_end(self) -> None:
        ranks = self.from_every_rank((self._val_metrics, self._dice_sums))  # each rank's share of the split
        self._reset_validation()
        if self.stage == "prompter":
            metrics = SegmentationMetrics.merged([rank_metrics for rank_metrics, _ in ranks])
            if len(metrics):
                values = metrics.compute()
                self.log("val/dice", values["dice"], prog_bar=True)
                self.log("val/iou", values["iou"])
        else:
            sums = {kind: sum(dice_sums[kind] for _, dice_sums in ranks) for kind in self.sampling.kinds}
            per_kind = {kind: float(total[0] / total[1]) for kind, total in sums.items() if total[1] > 0}
            if per_kind:
                for kind, value in per_kind.items():
                    self.log(f"val/dice_{kind}", value)
                self.log("val/dice", sum(per_kind.values()) / len(per_kind), prog_bar=True)

