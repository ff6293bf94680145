"""Anatomy ids to contrast, and mask pooling of feature maps onto them.

Anatomy maps hold integer ids (never rescaled: an id map of 0/1/2/3 keeps four regions). Per image, ``K`` ids are
drawn with replacement among the ids present (in both views, for the contrastive pairs), uniformly (as the
reference) or by area; the same ids serve the online and the target network. Pooling averages the feature vectors
over each id's pixels, weighting each feature cell by the fraction of it the id covers, so only the K sampled ids
are ever one-hot encoded. Pooling is linear, so a stride-1 convolution followed by pooling equals pooling its
input at each kernel offset and applying the kernel to the pooled vectors (:func:`pool_through_conv`): the FPN's
3 x 3 smoothing convolutions never need to run over the whole feature map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
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
    """Area-weighted mean feature of each id: features (N, C, h, w), fractions (N, K, h', w') -> (N, K, C)."""
    weights = pooling_weights(fractions, features.shape[-2:])
    return torch.einsum("nkp,ncp->nkc", weights.flatten(2).to(features.dtype), features.flatten(2))


def pool_through_conv(conv: nn.Conv2d, features: Tensor, fractions: Tensor) -> Tensor:
    """``pool_features(conv(features), fractions)`` without running ``conv`` over the map: (N, C, h, w) -> (N, K, O).

    ``conv`` must keep the map's size (stride 1, dilation 1, padding (kernel - 1) / 2, one group). Each kernel
    offset t pools the input with the weights shifted by t (zero where the shift leaves the map, as zero padding
    does), and the kernel's tap t maps that pooled vector to the output channels; the bias enters with the weights'
    sum (1, or 0 for an id absent from the image).
    """
    kernel_h, kernel_w = conv.kernel_size
    pad_h, pad_w = conv.padding
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or (kernel_h, kernel_w) != (
            2 * pad_h + 1, 2 * pad_w + 1):
        raise ValueError(f"pool_through_conv needs a size-keeping convolution, got {conv}")
    height, width = features.shape[-2:]
    weights = pooling_weights(fractions, (height, width))
    padded = F.pad(weights, (pad_w, pad_w, pad_h, pad_h))
    # The weights seen by tap (i, j): input pixel q contributes to output pixel q - (i, j) + padding.
    shifted = torch.stack([padded[..., 2 * pad_h - i: 2 * pad_h - i + height, 2 * pad_w - j: 2 * pad_w - j + width]
                           for i in range(kernel_h) for j in range(kernel_w)], dim=2)  # (N, K, T, h, w)
    taps = torch.einsum("nktp,ncp->nktc", shifted.flatten(3).to(features.dtype), features.flatten(2))
    kernel = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, kernel_h * kernel_w, -1)  # (O, T, C)
    pooled = torch.einsum("nktc,otc->nko", taps, kernel.to(taps.dtype))
    if conv.bias is not None:
        pooled = pooled + weights.flatten(2).sum(-1, keepdim=True).to(pooled.dtype) * conv.bias.to(pooled.dtype)
    return pooled


def pooling_weights(fractions: Tensor, size: tuple[int, int]) -> Tensor:
    """fractions (N, K, h', w') -> per-id weights (N, K, h, w) summing to 1 (0 for an absent id) at ``size``.

    ``fractions`` at a finer grid than ``size`` are average-pooled down first.
    """
    if tuple(fractions.shape[-2:]) != tuple(size):
        fractions = F.adaptive_avg_pool2d(fractions, size)
    return fractions / fractions.flatten(2).sum(dim=-1)[..., None, None].clamp(min=1e-6)
