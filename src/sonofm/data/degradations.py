"""Seeded image degradations for the enhancement task, on float images in [0, 1].

Every function takes ``(3, H, W)`` or ``(B, 3, H, W)`` float tensors in [0, 1] and a ``torch.Generator`` (all
randomness comes from it, so a seed fixes the result) and returns a tensor of the same shape, clamped to [0, 1].

- ``speckle``: multiplicative speckle in the envelope domain. The image is taken as log-compressed B-mode
  (``I = log1p(a * E) / log1p(a)``, ``a = LOG_GAIN``); the envelope ``E`` is multiplied by unit-mean
  gamma-distributed noise of shape ``looks = 1 / strength**2`` (``looks = 1`` is fully developed speckle: Rayleigh
  amplitude, exponential intensity) and compressed back. ``strength`` is drawn uniformly from ``speckle_strength``.
- ``blur``: Gaussian blur with ``sigma`` (pixels) drawn uniformly from ``blur_sigma``, reflect padding.
- ``downsample``: area down-sampling by ``scale`` (2 or 4), then bicubic up-sampling back to the input size.
- ``mixed``: one of the three above, or (with probability ``compose_probability``) blur or down-sampling followed by
  speckle.

Validation and test images get :func:`fixed_generator` seeded by the image index, so their degradation and metrics
are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sonofm.errors import SonofmError, raise_first_failure

DEGRADATIONS = ("speckle", "blur", "downsample", "mixed")
SCALES = (2, 4)
LOG_GAIN = 50.0  # log-compression gain mapping the envelope to display values


@dataclass
class DegradationConfig:
    """Which degradation, and its parameter ranges (each drawn uniformly per image)."""

    kind: str = "speckle"
    scale: int = 2
    speckle_strength: tuple[float, float] = (0.4, 0.8)
    blur_sigma: tuple[float, float] = (1.0, 2.5)
    compose_probability: float = 0.3

    def checks(self) -> list[tuple[bool, str]]:
        return [
            (self.kind in DEGRADATIONS, f"--degradation must be one of {', '.join(DEGRADATIONS)}, got {self.kind!r}"),
            (self.scale in SCALES, f"--scale must be 2 or 4, got {self.scale}"),
            (0 < self.speckle_strength[0] <= self.speckle_strength[1], "speckle_strength must be 0 < low <= high"),
            (0 < self.blur_sigma[0] <= self.blur_sigma[1], "blur_sigma must be 0 < low <= high"),
        ]

    def validate(self) -> None:
        raise_first_failure(self.checks())


def fixed_generator(index: int, seed: int = 0) -> torch.Generator:
    """The generator that degrades evaluation image ``index`` the same way in every run."""
    return torch.Generator().manual_seed(1_000_003 * seed + index)


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=generator))


def _batched(image: Tensor) -> tuple[Tensor, bool]:
    if image.ndim == 3:
        return image.unsqueeze(0), True
    if image.ndim != 4:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got shape {tuple(image.shape)}")
    return image, False


def speckle(image: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Multiplicative gamma speckle of relative std ``strength`` on the envelope of ``image`` (same shape).

    One noise field per image, shared by the three channels (gray ultrasound stays gray).
    """
    batch, squeeze = _batched(image)
    envelope = torch.expm1(batch.clamp(0, 1) * math.log1p(LOG_GAIN)) / LOG_GAIN
    looks = 1.0 / strength**2
    shape = (batch.shape[0], 1, *batch.shape[2:])
    noise = torch._standard_gamma(torch.full(shape, looks, dtype=torch.float64), generator=generator) / looks
    out = torch.log1p(LOG_GAIN * envelope * noise.to(batch.dtype)) / math.log1p(LOG_GAIN)
    out = out.clamp(0, 1)
    return out.squeeze(0) if squeeze else out


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (kernel radius ``ceil(3 sigma)``, reflect padding), same shape."""
    batch, squeeze = _batched(image)
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, batch.shape[-1] - 1, batch.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=batch.dtype)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = batch.shape[1]
    padded = F.pad(batch, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    out = out.clamp(0, 1)
    return out.squeeze(0) if squeeze else out


def downsample(image: Tensor, scale: int) -> Tensor:
    """Area down-sampling by ``scale`` then bicubic up-sampling back to the input size, same shape."""
    batch, squeeze = _batched(image)
    size = batch.shape[-2:]
    small = F.interpolate(batch, size=(max(1, size[0] // scale), max(1, size[1] // scale)), mode="area")
    out = F.interpolate(small, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    return out.squeeze(0) if squeeze else out


def degrade(image: Tensor, config: DegradationConfig, generator: torch.Generator) -> Tensor:
    """``image`` degraded as ``config`` says, parameters drawn from ``generator`` (one draw for the whole batch)."""
    kind = config.kind
    if kind == "mixed":
        choice = int(torch.randint(3, (), generator=generator))
        compose = float(torch.rand((), generator=generator)) < config.compose_probability
        kind = ("speckle", "blur", "downsample")[choice]
        if compose and kind != "speckle":
            first = degrade(image, DegradationConfig(kind, config.scale, config.speckle_strength, config.blur_sigma),
                            generator)
            return speckle(first, _uniform(config.speckle_strength, generator), generator)
    if kind == "speckle":
        return speckle(image, _uniform(config.speckle_strength, generator), generator)
    if kind == "blur":
        return gaussian_blur(image, _uniform(config.blur_sigma, generator))
    if kind == "downsample":
        return downsample(image, config.scale)
    raise SonofmError(f"unknown degradation {config.kind!r}; use one of {', '.join(DEGRADATIONS)}")
