"""Enhancement training: the dataset of (degraded, clean, fan) triples and the Lightning module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from sonofm.data.degradations import DegradationConfig, degrade, fixed_generator
from sonofm.data.fan_mask import detect_fan_mask
from sonofm.data.image_io import read_image
from sonofm.data.records import Sample
from sonofm.data.sampling import ItemKey, item_generator
from sonofm.engine.module import SeededTrainingModule
from sonofm.engine.optim import OptimConfig
from sonofm.metrics.enhancement import enhancement_metrics, ssim
from sonofm.models.enhancer import ImageEnhancer

Batch = tuple[Tensor, Tensor, Tensor]
METRICS = ("psnr", "ssim", "psnr_fan", "ssim_fan")


def load_resized(path, img_size: int) -> np.ndarray:
    """Image file -> ``uint8 (S, S, 3)``, bicubic-resized: what the enhancer sees, in training and prediction."""
    return np.asarray(Image.fromarray(read_image(path)).convert("RGB").resize((img_size, img_size), Image.BICUBIC))


def unit_tensor(image: np.ndarray) -> Tensor:
    """``uint8 (H, W, 3)`` -> ``float32 (3, H, W)`` in [0, 1]."""
    return torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255


def load_clean(path, img_size: int) -> tuple[Tensor, Tensor]:
    """Image file -> ``(image float32 (3, S, S) in [0, 1], fan mask bool (S, S))`` (bicubic resize, fan from it)."""
    resized = load_resized(path, img_size)
    return unit_tensor(resized), torch.from_numpy(np.array(detect_fan_mask(resized), dtype=bool))


class EnhancementDataset(Dataset):
    """``(degraded (3, S, S), clean (3, S, S), fan (S, S) bool)`` per sample.

    Training items are degraded (and flipped half the time) with the generator of their sampler key, so every epoch
    sees new degradations yet a resumed run sees the same ones; evaluation items use :func:`fixed_generator` of their
    position, so evaluation is reproducible.
    """

    def __init__(self, samples: Sequence[Sample], img_size: int, degradation: DegradationConfig, train: bool,
                 seed: int = 0) -> None:
        self.samples = list(samples)
        self.img_size = img_size
        self.degradation = degradation
        self.train = train
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: ItemKey) -> Batch:
        position, generator = item_generator(key)
        clean, fan = load_clean(self.samples[position].image, self.img_size)
        if generator is None:
            generator = fixed_generator(position, self.seed)
        if self.train and float(torch.rand((), generator=generator)) < 0.5:
            clean, fan = clean.flip(-1), fan.flip(-1)
        return degrade(clean, self.degradation, generator), clean, fan


def restoration_loss(restored: Tensor, clean: Tensor, fan: Tensor | None, ssim_weight: float) -> Tensor:
    """L1 (over ``fan`` pixels when given) + ``ssim_weight * (1 - SSIM)``, in float32."""
    restored, clean = restored.float(), clean.float()
    error = (restored - clean).abs()
    if fan is None:
        loss = error.mean()
    else:
        weights = fan.unsqueeze(1).float()
        loss = (error * weights).sum() / (weights.sum() * 3).clamp_min(1)
    if ssim_weight > 0:
        loss = loss + ssim_weight * (1 - ssim(restored, clean, fan).float().mean())
    return loss


class EnhancementModule(SeededTrainingModule):
    """Trains an :class:`ImageEnhancer` on (degraded, clean, fan) batches; logs val PSNR/SSIM (whole and fan)."""

    def __init__(self, model: ImageEnhancer, optim: OptimConfig, seed: int = 0, loss_in_fan: bool = True,
                 ssim_weight: float = 0.0) -> None:
        super().__init__(model, optim, seed)
        self.loss_in_fan = loss_in_fan
        self.ssim_weight = ssim_weight
        self._val: dict[str, list[Tensor]] = {}

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        degraded, clean, fan = batch
        loss = restoration_loss(self.model(degraded), clean, fan if self.loss_in_fan else None, self.ssim_weight)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(clean))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if not self.evaluates(batch_idx):
            return
        degraded, clean, fan = batch
        restored = self.model(degraded).float()
        loss = restoration_loss(restored, clean, fan if self.loss_in_fan else None, self.ssim_weight)
        self._val.setdefault("loss", []).append(loss.detach().reshape(1).expand(len(clean)).cpu())
        for key, values in enhancement_metrics(restored.clamp(0, 1), clean, fan).items():
            self._val.setdefault(key, []).append(values.cpu())

    def on_validation_epoch_end(self) -> None:
        ranks = [values for values in self.from_every_rank(self._val) if values]  # each rank's {key: [(B,), ...]}
        self._val = {}
        if not ranks:
            return
        for key in ranks[0]:
            value = torch.cat([part for values in ranks for part in values[key]]).float().mean()
            self.log(f"val/{key}", value, prog_bar=(key == "psnr"))
