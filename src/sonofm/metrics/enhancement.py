"""PSNR and SSIM of restored images against their originals, on the whole image or inside a (fan) mask.

Images are float ``(B, C, H, W)`` in [0, 1] (``data_range`` 1); masks are bool ``(B, H, W)``. Every function returns
one value per image ``(B,)`` in float64. Masked PSNR uses the MSE over the masked pixels (all channels); masked SSIM is
the mean of the SSIM map over the masked pixels. Identical images give PSNR ``inf`` and SSIM 1.
SSIM: Gaussian window 11 px, sigma 1.5, K1 0.01, K2 0.03, reflect padding so the map keeps the image size (the map is
averaged over channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _mask_weights(mask: Tensor | None, like: Tensor) -> Tensor:
    """``(B, 1, H, W)`` float weights: the mask, or all ones."""
    if mask is None:
        return torch.ones(like.shape[0], 1, *like.shape[2:], dtype=like.dtype, device=like.device)
    return mask.to(like.dtype).unsqueeze(1)


def psnr(restored: Tensor, target: Tensor, mask: Tensor | None = None, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB ``(B,)``: ``10 log10(range^2 / MSE)``, MSE over ``mask`` pixels when given."""
    restored, target = restored.double(), target.double()
    weights = _mask_weights(mask, target)
    squared = (restored - target).pow(2) * weights
    count = weights.sum(dim=(1, 2, 3)) * target.shape[1]
    mse = squared.sum(dim=(1, 2, 3)) / count.clamp_min(1)
    return 10 * torch.log10(data_range**2 / mse)


def ssim_map(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM map ``(B, H, W)`` (channel mean) with an 11 px Gaussian window."""
    restored, target = restored.double(), target.double()
    channels = target.shape[1]
    offsets = torch.arange(WINDOW, dtype=torch.float64, device=target.device) - WINDOW // 2
    line = torch.exp(-offsets**2 / (2 * SIGMA**2))
    line = line / line.sum()
    kernel = (line[:, None] * line[None, :]).expand(channels, 1, WINDOW, WINDOW)
    pad = WINDOW // 2

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, groups=channels)

    mu_x, mu_y = blur(restored), blur(target)
    var_x = blur(restored * restored) - mu_x**2
    var_y = blur(target * target) - mu_y**2
    cov = blur(restored * target) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    values = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return values.mean(dim=1)


def ssim(restored: Tensor, target: Tensor, mask: Tensor | None = None, data_range: float = 1.0) -> Tensor:
    """Per-image SSIM ``(B,)``: the SSIM map's mean, over ``mask`` pixels when given."""
    values = ssim_map(restored, target, data_range)
    weights = _mask_weights(mask, values.unsqueeze(1)).squeeze(1)
    return (values * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)).clamp_min(1)


def enhancement_metrics(restored: Tensor, target: Tensor, fan: Tensor) -> dict[str, Tensor]:
    """``{"psnr", "ssim", "psnr_fan", "ssim_fan"}`` per image ``(B,)`` for restored vs target with fan masks."""
    return {
        "psnr": psnr(restored, target), "ssim": ssim(restored, target),
        "psnr_fan": psnr(restored, target, fan), "ssim_fan": ssim(restored, target, fan),
    }
