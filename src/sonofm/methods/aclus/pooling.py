"""Anatomy ids to contrast, and mask pooling of feature maps onto them.

Anatomy maps hold integer ids (never rescaled: an id map of 0/1/2/3 keeps four regions). Per image, ``K`` ids are
drawn with replacement among the ids present (in both views, for the contrastive pairs), uniformly (as the
reference) or by area; the same ids serve the online and the target network. Pooling averages the feature vectors
over each id's pixels, weighting each feature cell by the fraction of it the id covers, so only the K sampled ids
are ever one-hot encoded.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

IGNORE_ID = 255


def id_presence(masks: Tensor, num_ids: int, background: bool) -> Tensor:
    """masks (N, H, W) int64 -> pixel counts (N, num_ids) of each id (background 0 and ``IGNORE_ID`` zeroed as set)."""
    flat = masks.flatten(1).clamp(max=num_ids - 1)
    counts = torch.zeros(masks.shape[0], num_ids, device=masks.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float32))
    if not background:
        counts[:, 0] = 0
    if num_ids > IGNORE_ID:
        counts[:, IGNORE_ID] = 0
    return counts


def sample_ids(counts: Tensor, k: int, generator: torch.Generator, by_area: bool = False) -> tuple[Tensor, Tensor]:
    """Draw ``k`` ids per row of ``counts`` (N, M) among those with a count > 0.

    Returns ids (N, k) int64 and valid (N,) bool: rows without any id get id 0 and ``valid`` False.
    """
    weights = counts if by_area else (counts > 0).float()
    valid = weights.sum(dim=1) > 0
    weights = torch.where(valid[:, None], weights, torch.ones_like(weights))
    ids = torch.multinomial(weights, k, replacement=True, generator=generator)
    return torch.where(valid[:, None], ids, torch.zeros_like(ids)), valid


def id_fractions(masks: Tensor, ids: Tensor, grid: int) -> Tensor:
    """For each sampled id, the fraction of each cell of a ``grid`` x ``grid`` map it covers.

    masks (N, H, W) int64, ids (N, K) -> (N, K, grid, grid) float; H and W must be multiples of ``grid``.
    """
    height, width = masks.shape[-2:]
    onehot = masks[:, None] == ids[:, :, None, None]  # (N, K, H, W) bool
    cells = onehot.reshape(*ids.shape, grid, height // grid, grid, width // grid)
    return cells.sum(dim=(3, 5), dtype=torch.float32) / ((height // grid) * (width // grid))


def pool_features(features: Tensor, fractions: Tensor) -> Tensor:
    """Area-weighted mean feature of each id: features (N, C, h, w), fractions (N, K, h', w') -> (N, K, C).

    ``fractions`` at a finer grid than the features are average-pooled down to (h, w) first.
    """
    if fractions.shape[-1] != features.shape[-1]:
        fractions = F.adaptive_avg_pool2d(fractions, features.shape[-2:])
    weights = fractions.flatten(2)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-6)
    return torch.einsum("nkp,ncp->nkc", weights.to(features.dtype), features.flatten(2))
