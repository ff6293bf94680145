"""USFM's own segmentation numbers (its Table 2), as its released code computes them, for comparison with the paper.

They differ from sonofm's Dice and HD95 (:mod:`sonofm.metrics.segmentation`):

- ``usfm_dice``: binary per image: every class >= 1 counts as foreground (multi-class results collapse), then
  ``(2 |P∩G| + 1e-5) / (|P| + |G| + 1e-5)``; an empty prediction of an empty target scores 1.
- ``usfm_hausdorff``: the ``hausdorff`` package's Manhattan Hausdorff distance called on the two whole ``(H, W)``
  binary arrays, which takes each image ROW as one point in W dimensions: the larger of the two directed distances
  ``max_a min_b |a - b|_1`` over rows ``a`` of one mask and ``b`` of the other. It is not a distance in pixels
  between mask boundaries.
"""

from __future__ import annotations

import torch
from torch import Tensor

SMOOTH = 1e-5


def usfm_dice(pred: Tensor, target: Tensor) -> float:
    """USFM's binary Dice of one ``(H, W)`` pair of class-id maps."""
    predicted, true = pred > 0, target > 0
    overlap = (predicted & true).sum().item()
    return (2 * overlap + SMOOTH) / (predicted.sum().item() + true.sum().item() + SMOOTH)


def usfm_row_hausdorff(pred: Tensor, target: Tensor) -> float:
    """USFM's "Hausdorff" of one ``(H, W)`` pair of class-id maps: rows as points, Manhattan distance."""
    predicted, true = (pred > 0).double(), (target > 0).double()
    distances = torch.cdist(predicted, true, p=1)  # (H, H): row i of pred against row j of target
    return max(distances.min(dim=1).values.max().item(), distances.min(dim=0).values.max().item())
