"""Two augmented views of an image with its anatomy map in lock-step, and the region both views show.

A view is a crop box ``(top, left, height, width)`` in original pixels, resized to ``size``, then optionally
mirrored left-right. The views' overlap ("core") is the intersection of the two boxes in original coordinates; a
flip does not change which pixels a view shows, only where they land, which :func:`box_in_view` accounts for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

Box = tuple[int, int, int, int]  # top, left, height, width in original pixels


@dataclass(frozen=True)
class ViewParams:
    box: Box
    flip: bool


def sample_view(height: int, width: int, generator: torch.Generator, scale: tuple[float, float] = (0.08, 1.0),
                ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> ViewParams:
    """A random resized crop (area fraction in ``scale``, aspect in ``ratio``) and a fair-coin horizontal flip."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = (0, 0, height, width)
    for _ in range(10):
        target = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, *log_ratio))
        crop_w, crop_h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
            box = (top, left, crop_h, crop_w)
            break
    return ViewParams(box, bool(torch.rand(1, generator=generator) < 0.5))


def render_view(image: Tensor, mask: Tensor, view: ViewParams, size: int) -> tuple[Tensor, Tensor]:
    """image (3, H, W) float, mask (H, W) int64 -> the view's image (3, size, size) and mask (size, size)."""
    crop = TF.resized_crop(image, *view.box, size=[size, size], interpolation=InterpolationMode.BICUBIC,
                           antialias=True).clamp(0, 1)
    ids = TF.resized_crop(mask[None], *view.box, size=[size, size], interpolation=InterpolationMode.NEAREST)[0]
    if view.flip:
        crop, ids = crop.flip(-1), ids.flip(-1)
    return crop, ids


def overlap(a: ViewParams, b: ViewParams) -> Box | None:
    """The original-pixel box both views show, or None when they do not overlap."""
    top, left = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    bottom = min(a.box[0] + a.box[2], b.box[0] + b.box[2])
    right = min(a.box[1] + a.box[3], b.box[1] + b.box[3])
    if bottom <= top or right <= left:
        return None
    return top, left, bottom - top, right - left


def box_in_view(box: Box, view: ViewParams, size: int) -> tuple[float, float, float, float]:
    """Where original-pixel ``box`` lands in the rendered view: ``(x0, y0, x1, y1)`` in view pixels (edges)."""
    top, left, height, width = view.box
    sy, sx = size / height, size / width
    x0, x1 = (box[1] - left) * sx, (box[1] + box[3] - left) * sx
    y0, y1 = (box[0] - top) * sy, (box[0] + box[2] - top) * sy
    if view.flip:
        x0, x1 = size - x1, size - x0
    return x0, y0, x1, y1


def photometric(image: Tensor, generator: torch.Generator, blur_p: float, solarize_p: float,
                strength: float = 0.4) -> Tensor:
    """BYOL-style image-only augmentation on (3, S, S) in [0, 1]: brightness/contrast jitter (p 0.8), Gaussian blur
    (kernel 23, sigma 0.1-2, probability ``blur_p``), solarisation at 0.5 (probability ``solarize_p``)."""
    if _uniform(generator, 0, 1) < 0.8:
        image = TF.adjust_brightness(image, _uniform(generator, 1 - strength, 1 + strength))
        image = TF.adjust_contrast(image, _uniform(generator, 1 - strength, 1 + strength))
    if _uniform(generator, 0, 1) < blur_p:
        sigma = _uniform(generator, 0.1, 2.0)
        image = TF.gaussian_blur(image, kernel_size=[23, 23], sigma=[sigma, sigma])
    if _uniform(generator, 0, 1) < solarize_p:
        image = torch.where(image >= 0.5, 1 - image, image)
    return image.clamp(0, 1)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator))
