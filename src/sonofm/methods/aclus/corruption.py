"""Context-prediction damage for the core image, vectorised over the batch, in [0, 1] pixel space, on a copy.

Models-Genesis-style, as ACLUS uses it: local pixel shuffling (each image with probability ``shuffle_p``; then each
``shuffle_block`` x ``shuffle_block`` cell of a grid with probability ``shuffle_cell_p`` has its pixels permuted),
a non-linear intensity remap along a random cubic Bezier curve from (0, 0) to (1, 1) (probability ``remap_p``),
and in-painting: up to ``inpaint_boxes`` rectangles (each with probability ``inpaint_box_p``, sides a
``inpaint_size`` fraction of the image's) filled with uniform noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

CURVE_SAMPLES = 1000


@dataclass
class CorruptionConfig:
    shuffle_p: float = 0.8
    shuffle_block: int = 11
    shuffle_cell_p: float = 0.5
    remap_p: float = 0.9
    inpaint_boxes: int = 10
    inpaint_box_p: float = 0.95
    inpaint_size: tuple[float, float] = (0.1, 0.2)


def corrupt(images: Tensor, config: CorruptionConfig, generator: torch.Generator) -> Tensor:
    """images (B, C, H, W) in [0, 1] -> a damaged copy (B, C, H, W) in [0, 1]; ``images`` is left untouched.

    ``generator`` must live on ``images``' device.
    """
    out = shuffle_cells(images, config, generator)
    out = bezier_remap(out, config.remap_p, generator)
    return inpaint(out, config, generator)


def shuffle_cells(images: Tensor, config: CorruptionConfig, generator: torch.Generator) -> Tensor:
    """Permute the pixels inside randomly chosen grid cells (one permutation per cell, shared by the channels)."""
    batch, channels, height, width = images.shape
    block = config.shuffle_block
    rows, cols = height // block, width // block
    out = images.clone()
    if rows == 0 or cols == 0:
        return out
    device = images.device
    region = out[..., : rows * block, : cols * block]
    cells = region.reshape(batch, channels, rows, block, cols, block).permute(0, 1, 2, 4, 3, 5)
    cells = cells.reshape(batch, channels, rows, cols, block * block)
    chosen = torch.rand(batch, 1, 1, generator=generator, device=device) < config.shuffle_p
    chosen = chosen & (torch.rand(batch, rows, cols, generator=generator, device=device) < config.shuffle_cell_p)
    keys = torch.rand(batch, rows, cols, block * block, generator=generator, device=device)
    identity = torch.arange(block * block, device=device, dtype=keys.dtype).expand_as(keys)
    order = torch.where(chosen[..., None], keys, identity).argsort(dim=-1)
    shuffled = cells.gather(-1, order[:, None].expand_as(cells))
    shuffled = shuffled.reshape(batch, channels, rows, cols, block, block).permute(0, 1, 2, 4, 3, 5)
    out[..., : rows * block, : cols * block] = shuffled.reshape(batch, channels, rows * block, cols * block)
    return out


def bezier_remap(images: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Map intensities through a random monotone-in-x cubic Bezier curve per image (identity where not drawn)."""
    batch = images.shape[0]
    device = images.device
    controls = torch.rand(batch, 2, 2, generator=generator, device=device)  # two inner control points (x, y)
    t = torch.linspace(0, 1, CURVE_SAMPLES, device=device)[None]
    weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)
    xs = weights[1] * controls[:, 0, :1] + weights[2] * controls[:, 1, :1] + weights[3]
    ys = weights[1] * controls[:, 0, 1:] + weights[2] * controls[:, 1, 1:] + weights[3]
    xs, order = xs.sort(dim=1)
    ys = ys.gather(1, order)
    values = images.reshape(batch, -1).float().contiguous()
    upper = torch.searchsorted(xs, values).clamp(1, CURVE_SAMPLES - 1)
    x0, x1 = xs.gather(1, upper - 1), xs.gather(1, upper)
    y0, y1 = ys.gather(1, upper - 1), ys.gather(1, upper)
    fraction = ((values - x0) / (x1 - x0).clamp(min=1e-8)).clamp(0, 1)
    mapped = (y0 + fraction * (y1 - y0)).reshape(images.shape).to(images.dtype)
    drawn = torch.rand(batch, 1, 1, 1, generator=generator, device=device) < probability
    return torch.where(drawn, mapped.clamp(0, 1), images)


def inpaint(images: Tensor, config: CorruptionConfig, generator: torch.Generator) -> Tensor:
    """Fill random rectangles with uniform noise."""
    batch, channels, height, width = images.shape
    device = images.device
    boxes = config.inpaint_boxes
    low, high = config.inpaint_size
    sizes = low + (high - low) * torch.rand(batch, boxes, 2, generator=generator, device=device)
    box_h, box_w = (sizes[..., 0] * height).round(), (sizes[..., 1] * width).round()
    top = torch.rand(batch, boxes, generator=generator, device=device) * (height - box_h + 1)
    left = torch.rand(batch, boxes, generator=generator, device=device) * (width - box_w + 1)
    top, left = top.floor(), left.floor()
    active = torch.rand(batch, boxes, generator=generator, device=device) < config.inpaint_box_p
    ys = torch.arange(height, device=device).view(1, 1, height, 1)
    xs = torch.arange(width, device=device).view(1, 1, 1, width)
    inside = ((ys >= top[..., None, None]) & (ys < (top + box_h)[..., None, None])
              & (xs >= left[..., None, None]) & (xs < (left + box_w)[..., None, None]) & active[..., None, None])
    noise = torch.rand(images.shape, generator=generator, device=device, dtype=torch.float32).to(images.dtype)
    return torch.where(inside.any(dim=1, keepdim=True), noise, images)
