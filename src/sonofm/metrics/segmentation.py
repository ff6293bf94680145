"""Segmentation metrics (Dice, IoU, HD95, pixel accuracy) accumulated image by image.

Conventions:

- Masks hold class ids; class 0 is background and the foreground classes are 1..K-1 (binary data uses class names
  like ``["background", "lesion"]``). Pixels whose target is ``ignore_index`` are excluded from every metric; for HD95
  they count as background in both prediction and target.
- Per image and foreground class c, with P and G the predicted and true pixels of c:
  Dice = 2|P∩G| / (|P| + |G|), IoU = |P∩G| / |P∪G|. If P and G are both empty, Dice = IoU = 1 and HD95 = 0; so a class
  absent from every prediction and target still gets Dice 1. If exactly one is empty, Dice = IoU = 0 and HD95 is
  undefined (NaN): such pairs are counted in ``hd95_undefined`` and left out of the HD95 means.
- HD95 is MONAI's symmetric 95th-percentile Hausdorff distance between mask boundaries, in pixels. ``hd95_mm`` is HD95
  times the image's (isotropic) pixel size; exact, since Euclidean distances scale linearly with the spacing.
- ``compute()`` keys: ``dice``, ``iou`` and ``hd95`` are means over foreground classes of per-class means over images
  (NaN-skipping for HD95; NaN when no value is defined). ``dice/<name>``, ``iou/<name>``, ``hd95/<name>`` are the
  per-class means for each foreground class. ``dice_std`` is the population std over images of the per-image
  foreground-mean Dice. ``pixel_accuracy`` pools correct non-ignored pixels over all images. ``hd95_undefined`` is
  the fraction of (image, foreground class) pairs with exactly one of P/G empty. ``hd95_mm`` is present only when some
  image had a pixel size and every image with a defined HD95 had one. With ``compute_hd95=False`` no ``hd95*`` key
  is written and HD95 is never computed.
- ``usfm_dice`` (and, with HD95, ``usfm_hausdorff``) are USFM's own definitions, for comparison with its paper
  (:mod:`sonofm.metrics.usfm_compatible`); each is a mean over images with its population std (``*_std``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sonofm.metrics.usfm_compatible import usfm_dice, usfm_row_hausdorff


@dataclass(frozen=True)
class _ImageScores:
    """Values of one image; tensors are (F,) over the foreground classes."""

    dice: Tensor
    iou: Tensor
    undefined: Tensor
    hd95: Tensor | None
    usfm_dice: float
    usfm_hausdorff: float | None
    correct: int
    valid: int
    pixel_size_mm: float | None


class SegmentationMetrics:
    """Accumulates per-image, per-class values; images may have different sizes."""

    def __init__(self, class_names: list[str], ignore_index: int = 255, compute_hd95: bool = True) -> None:
        if len(class_names) < 2:
            raise ValueError("need a background class and at least one foreground class")
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.compute_hd95 = compute_hd95
        self._images: list[_ImageScores] = []

    def __len__(self) -> int:
        return len(self._images)

    def update(self, pred: Tensor, target: Tensor, pixel_size_mm: float | None = None) -> None:
        """Add images: pred, target are (H, W) or (B, H, W) integer class ids; pixel_size_mm applies to all of them."""
        pred, target, valid = self._check(pred, target)
        confusion = _confusion(pred, target, valid, len(self.class_names))  # (B, K, K), rows are true classes
        intersection = confusion.diagonal(dim1=1, dim2=2)
        pred_count, target_count = confusion.sum(1), confusion.sum(2)
        total = pred_count + target_count
        union = total - intersection
        dice = torch.where(total > 0, 2 * intersection / total.clamp(min=1), 1.0)[:, 1:]
        iou = torch.where(union > 0, intersection / union.clamp(min=1), 1.0)[:, 1:]
        undefined = ((pred_count == 0) != (target_count == 0))[:, 1:]
        both = ((pred_count > 0) & (target_count > 0))[:, 1:]
        correct, counted = intersection.sum(1).tolist(), confusion.sum((1, 2)).tolist()
        for index in range(pred.shape[0]):
            hd95 = usfm_hausdorff = None
            image_pred, image_target = pred[index] * valid[index], target[index] * valid[index]
            if self.compute_hd95:
                hd95 = _hd95(image_pred, image_target, both[index], undefined[index])
                usfm_hausdorff = usfm_row_hausdorff(image_pred, image_target)
            scores = _ImageScores(
                dice=dice[index].cpu(),
                iou=iou[index].cpu(),
                undefined=undefined[index].cpu(),
                hd95=hd95,
                usfm_dice=usfm_dice(image_pred, image_target),
                usfm_hausdorff=usfm_hausdorff,
                correct=correct[index],
                valid=counted[index],
                pixel_size_mm=pixel_size_mm,
            )
            self._images.append(scores)

    @staticmethod
    def merged(parts: list[SegmentationMetrics]) -> SegmentationMetrics:
        """The first of ``parts`` holding every part's images (the processes' shares of one split)."""
        for other in parts[1:]:
            parts[0]._images.extend(other._images)
        return parts[0]

    def compute(self) -> dict[str, float]:
        """Metrics over all images seen (see the module docstring for the keys)."""
        if not self._images:
            raise ValueError("no images seen")
        dice = torch.stack([image.dice for image in self._images])  # (N, F)
        iou = torch.stack([image.iou for image in self._images])
        correct = sum(image.correct for image in self._images)
        valid = sum(image.valid for image in self._images)
        metrics = {
            "dice": dice.mean(0).mean().item(),
            "iou": iou.mean(0).mean().item(),
            "dice_std": dice.mean(1).std(correction=0).item(),
            "pixel_accuracy": correct / valid if valid else math.nan,
        }
        usfm = {"usfm_dice": [image.usfm_dice for image in self._images]}
        if self.compute_hd95:
            metrics.update(self._hd95_summary())
            usfm["usfm_hausdorff"] = [image.usfm_hausdorff for image in self._images]
        for key, values in usfm.items():
            column = torch.tensor(values, dtype=torch.float64)
            metrics[key], metrics[f"{key}_std"] = column.mean().item(), column.std(correction=0).item()
        for index, name in enumerate(self.class_names[1:]):
            metrics[f"dice/{name}"] = dice[:, index].mean().item()
            metrics[f"iou/{name}"] = iou[:, index].mean().item()
        if self.compute_hd95:
            hd95 = torch.stack([image.hd95 for image in self._images]).nanmean(0)
            for index, name in enumerate(self.class_names[1:]):
                metrics[f"hd95/{name}"] = hd95[index].item()
        return metrics

    def per_image(self) -> list[dict[str, float]]:
        """One dict per image seen, in order: ``dice``, ``iou``, ``hd95`` (foreground means; ``hd95_mm`` when the
        image had a pixel size), ``pixel_accuracy`` and the per-class ``dice/<name>``, ``iou/<name>``, ``hd95/<name>``.
        """
        return [self._image_dict(image) for image in self._images]

    def _check(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, H, W) int64 pred and target, and the (B, H, W) mask of non-ignored pixels."""
        if pred.shape != target.shape or pred.ndim not in (2, 3):
            raise ValueError(f"pred and target must both be (H, W) or (B, H, W), got {pred.shape} and {target.shape}")
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError("pred and target must hold integer class ids")
        if pred.ndim == 2:
            pred, target = pred[None], target[None]
        pred, target = pred.long(), target.long()
        valid = target != self.ignore_index
        num_classes = len(self.class_names)
        if ((pred < 0) | (pred >= num_classes)).any() or ((target < 0) | (target >= num_classes))[valid].any():
            raise ValueError(f"class ids must lie in [0, {num_classes}) (or be ignore_index in target)")
        return pred, target, valid

    def _hd95_summary(self) -> dict[str, float]:
        """``hd95``, ``hd95_undefined`` and, when every image with a defined HD95 has a pixel size, ``hd95_mm``."""
        hd95 = torch.stack([image.hd95 for image in self._images])  # (N, F), NaN where undefined
        undefined = torch.stack([image.undefined for image in self._images])
        summary = {"hd95": _nanmean_of_class_means(hd95), "hd95_undefined": undefined.float().mean().item()}
        sizes = torch.tensor([_size_or_nan(image.pixel_size_mm) for image in self._images], dtype=torch.float64)
        defined = ~hd95.isnan().all(1)
        if not sizes.isnan().all() and not sizes[defined].isnan().any():
            summary["hd95_mm"] = _nanmean_of_class_means(hd95 * sizes[:, None])
        return summary

    def _image_dict(self, image: _ImageScores) -> dict[str, float]:
        """Flat dict of one image's values."""
        values = {
            "dice": image.dice.mean().item(),
            "iou": image.iou.mean().item(),
            "pixel_accuracy": image.correct / image.valid if image.valid else math.nan,
            "usfm_dice": image.usfm_dice,
        }
        if image.usfm_hausdorff is not None:
            values["usfm_hausdorff"] = image.usfm_hausdorff
        if image.hd95 is not None:
            values["hd95"] = image.hd95.nanmean().item()
            if image.pixel_size_mm is not None:
                values["hd95_mm"] = values["hd95"] * image.pixel_size_mm
        for index, name in enumerate(self.class_names[1:]):
            values[f"dice/{name}"] = image.dice[index].item()
            values[f"iou/{name}"] = image.iou[index].item()
            if image.hd95 is not None:
                values[f"hd95/{name}"] = image.hd95[index].item()
        return values


def segmentation_metrics(
    preds: Sequence[Tensor],
    targets: Sequence[Tensor],
    class_names: list[str],
    ignore_index: int = 255,
    pixel_sizes_mm: Sequence[float | None] | None = None,
) -> dict[str, float]:
    """``SegmentationMetrics(...).compute()`` over pairs of (H, W) or (B, H, W) masks, one pixel size per pair."""
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions and {len(targets)} targets")
    sizes = [None] * len(preds) if pixel_sizes_mm is None else list(pixel_sizes_mm)
    if len(sizes) != len(preds):
        raise ValueError(f"got {len(sizes)} pixel sizes for {len(preds)} predictions")
    metrics = SegmentationMetrics(class_names, ignore_index=ignore_index)
    for pred, target, size in zip(preds, targets, sizes):
        metrics.update(pred, target, size)
    return metrics.compute()


def _confusion(pred: Tensor, target: Tensor, valid: Tensor, num_classes: int) -> Tensor:
    """(B, K, K) float64 pixel counts of the non-ignored pixels of each image; rows are true classes."""
    batch = pred.shape[0]
    offset = torch.arange(batch, device=pred.device).view(-1, 1, 1) * num_classes * num_classes
    codes = (offset + target * num_classes + pred)[valid]
    counts = torch.bincount(codes, minlength=batch * num_classes * num_classes)
    return counts.view(batch, num_classes, num_classes).double()


def _hd95(pred: Tensor, target: Tensor, both: Tensor, undefined: Tensor) -> Tensor:
    """(F,) HD95 in pixels of one (H, W) image: computed where ``both`` masks are non-empty, NaN where ``undefined``,
    else 0 (both empty)."""
    hd95 = torch.zeros(both.shape[0], dtype=torch.float64)
    hd95[undefined.cpu()] = math.nan
    classes = both.nonzero().flatten() + 1
    if classes.numel() == 0:
        return hd95
    from monai.metrics import compute_hausdorff_distance  # slow import, only needed here

    pred_masks = (pred[None] == classes.view(-1, 1, 1)).cpu()[None]  # (1, C, H, W)
    target_masks = (target[None] == classes.view(-1, 1, 1)).cpu()[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        distances = compute_hausdorff_distance(pred_masks, target_masks, include_background=True, percentile=95)
    hd95[classes.cpu() - 1] = distances[0].double()
    return hd95


def _nanmean_of_class_means(values: Tensor) -> float:
    """Mean over classes of the NaN-skipping per-class means of (N, F) values; NaN if none is defined."""
    return values.nanmean(0).nanmean().item()


def _size_or_nan(size: float | None) -> float:
    """Pixel size, NaN when unknown."""
    return math.nan if size is None else size
