"""The A-SAM mask loss: weighted BCE-with-logits plus soft Dice, per predicted binary mask."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def bce_dice_loss(logits: Tensor, targets: Tensor, bce_weight: float = 0.2, dice_weight: float = 0.8,
                  pos_weight: float = 1.0, valid: Tensor | None = None, smooth: float = 1.0) -> dict[str, Tensor]:
    """``bce_weight * BCE + dice_weight * (1 - soft Dice)``, averaged over masks.

    logits, targets: (P, H, W) (targets in {0, 1}); valid: optional (P, H, W) bool, pixels outside it count for
    neither term. Dice per mask is ``(2 sum(p t) + smooth) / (sum p + sum t + smooth)``, so an empty target with an
    empty prediction scores 1. Returns ``loss``, ``bce`` and ``dice_loss`` (scalars).
    """
    logits = logits.float()
    weight = None if valid is None else valid.float()
    bce = F.binary_cross_entropy_with_logits(
        logits, targets, weight=weight, pos_weight=torch.tensor(pos_weight, device=logits.device), reduction="sum",
    ) / (weight.sum().clamp(min=1) if weight is not None else targets.numel())
    probs = logits.sigmoid()
    if weight is not None:
        probs, targets = probs * weight, targets * weight
    intersection = (probs * targets).flatten(1).sum(dim=1)
    total = probs.flatten(1).sum(dim=1) + targets.flatten(1).sum(dim=1)
    dice_loss = (1 - (2 * intersection + smooth) / (total + smooth)).mean()
    return {"loss": bce_weight * bce + dice_weight * dice_loss, "bce": bce, "dice_loss": dice_loss}
