"""The two corruptions of USFM's dual masked image modelling: random block masks and annular band-stop filters.

Spatial: ``random_block_mask`` hides square blocks on a coarse grid, expressed on the encoder's patch grid;
``fill_masked`` paints the hidden pixels when the encoder does not use its mask token.
Frequency: ``ring_edges`` lists concentric annuli of the centred spectrum, ``band_stop_mask`` picks some of them per
image and ``apply_band_stop`` removes them.
"""

import math
from typing import Literal

import torch
from torch import Tensor

FillMode = Literal["mean", "zero"]


def random_block_mask(
    batch: int,
    img_size: int,
    mask_patch: int = 32,
    model_patch: int = 16,
    ratio: float = 0.6,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Bool ``(B, N)`` over the model's patch grid, ``N = (img_size / model_patch) ** 2``, row-major; True = hidden.

    The image is cut into ``(img_size / mask_patch) ** 2`` blocks; per image exactly ``ceil(ratio * blocks)`` of them,
    chosen uniformly without replacement, are hidden, each covering ``(mask_patch / model_patch) ** 2`` whole model
    patches. The product ``ratio * blocks`` is rounded to 1e-9 first, so 0.7 of 100 blocks is 70, not 71.
    The geometry is checked once by the run config (``MimConfig.checks``); here only asserted.
    """
    assert mask_patch > 0 and model_patch > 0 and mask_patch % model_patch == 0, (
        f"mask_patch {mask_patch} must be a positive multiple of model_patch {model_patch}")
    assert img_size > 0 and img_size % mask_patch == 0, (
        f"img_size {img_size} must be a positive multiple of mask_patch {mask_patch}")
    assert 0 <= ratio <= 1, f"mask ratio must be in [0, 1], got {ratio}"
    side = img_size // mask_patch
    blocks = side * side
    count = math.ceil(round(ratio * blocks, 9))
    scores = torch.rand(batch, blocks, generator=generator, device=device)
    chosen = scores.argsort(dim=1)[:, :count]
    block_mask = torch.zeros(batch, blocks, dtype=torch.bool, device=scores.device).scatter_(1, chosen, True)
    scale = mask_patch // model_patch
    grid = block_mask.view(batch, side, side).repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return grid.flatten(1)


def patch_mask_to_pixels(mask: Tensor, grid: tuple[int, int], patch: int) -> Tensor:
    """Patch mask ``(B, h*w)`` (row-major) -> float pixel mask ``(B, 1, h*patch, w*patch)``, 1 on hidden pixels."""
    pixels = mask.view(mask.shape[0], 1, *grid).float()
    return pixels.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def fill_masked(images: Tensor, pixel_mask: Tensor, mode: FillMode) -> Tensor:
    """Images ``(B, C, H, W)`` with the pixels where ``pixel_mask`` ``(B, 1, H, W)`` is 1 replaced.

    ``"mean"``: each image's per-channel mean over all its pixels (the paper's mean padding); ``"zero"``: 0, which on
    normalised images is the dataset mean colour.
    """
    if mode == "mean":
        fill = images.mean(dim=(-2, -1), keepdim=True).expand_as(images)
    elif mode == "zero":
        fill = torch.zeros_like(images)
    else:
        raise ValueError(f"fill mode must be 'mean' or 'zero', got {mode!r}")
    return torch.where(pixel_mask.bool(), fill, images)


def ring_edges(
    img_size: int,
    base_width: int = 4,
    centre_protect: int = 4,
    increase_factor: float = 0.5,
    max_increase: int = 16,
) -> list[tuple[int, int]]:
    """Contiguous annuli ``(r_in, r_out]`` of the centred spectrum, radii in frequency steps (cycles per image).

    The first ring starts at radius ``base_width``; a ring starting at ``r`` is ``int(r * increase_factor)`` wide
    (at least 1, at most ``max_increase``). Rings stop before the outer radius passes ``img_size / 2``, so corner
    frequencies are never listed. Nothing inside the disk of radius ``centre_protect`` is listed (rings are clipped
    to it). For 224 px: (4,6], (6,9], (9,13], (13,19], (19,28], (28,42], (42,58], (58,74], (74,90], (90,106].
    """
    if base_width < 1 or centre_protect < 0 or increase_factor <= 0 or max_increase < 1:
        raise ValueError("ring parameters must satisfy base_width >= 1, centre_protect >= 0, "
                         "increase_factor > 0, max_increase >= 1")
    rings = []
    inner = base_width
    while True:
        outer = inner + min(max(1, int(inner * increase_factor)), max_increase)
        if outer > img_size / 2:
            return rings
        if outer > centre_protect:
            rings.append((max(inner, centre_protect), outer))
        inner = outer


def frequency_radius(img_size: int, device: torch.device | str | None = None) -> Tensor:
    """``(H, W)`` distance of each entry of an unshifted ``fft2`` spectrum from DC, in frequency steps.

    Entry ``k`` holds signed frequency ``k`` or ``k - H`` (``torch.fft.fftfreq`` order); this equals the distance from
    the centre pixel of the ``fftshift``-ed spectrum.
    """
    steps = torch.fft.fftfreq(img_size, d=1.0 / img_size, device=device)
    return torch.sqrt(steps[:, None] ** 2 + steps[None, :] ** 2)


def band_stop_mask(
    batch: int,
    img_size: int,
    rings: list[tuple[int, int]],
    ratio: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Bool ``(B, H, W)`` in unshifted ``fft2`` layout, True where a frequency is removed.

    Per image, ``int(ratio * len(rings))`` rings are chosen uniformly without replacement; a frequency at radius
    ``rho`` is in ring ``(r_in, r_out]`` when ``r_in < rho <= r_out``. Radii are non-negative, so DC (``rho = 0``) is
    never removed; the protected centre is kept out of the rings by ``ring_edges``. The mask depends only on
    ``rho``, so it is symmetric under ``f -> -f`` and the filtered image stays real.
    """
    if not 0 <= ratio <= 1:
        raise ValueError(f"band-stop ratio must be in [0, 1], got {ratio}")
    if any(not 0 <= inner < outer for inner, outer in rings):
        raise ValueError(f"rings must satisfy 0 <= r_in < r_out, got {rings}")
    radius = frequency_radius(img_size, device)
    inner = torch.tensor([ring[0] for ring in rings], dtype=radius.dtype, device=radius.device)
    outer = torch.tensor([ring[1] for ring in rings], dtype=radius.dtype, device=radius.device)
    membership = (radius > inner[:, None, None]) & (radius <= outer[:, None, None])  # (R, H, W)
    scores = torch.rand(batch, len(rings), generator=generator, device=device)
    chosen = torch.zeros_like(scores).scatter_(1, scores.argsort(dim=1)[:, : int(ratio * len(rings))], 1.0)
    return (chosen @ membership.flatten(1).float() > 0).view(batch, img_size, img_size)


def apply_band_stop(images: Tensor, stop: Tensor) -> Tensor:
    """Images ``(B, C, H, W)`` with the frequencies where ``stop`` ``(B, H, W)`` is True set to zero, per channel.

    ``fft2`` -> zero -> ``ifft2`` in float32 (FFTs do not take bf16), then the real part, cast back to the input
    dtype. With a stop mask symmetric under ``f -> -f`` (as ``band_stop_mask`` builds) the inverse is real up to
    rounding, so the real part is the filtered image, sign included: it works on normalised images, unlike taking
    the magnitude, which folds negative values up.
    """
    spectrum = torch.fft.fft2(images.float())
    filtered = torch.fft.ifft2(spectrum.masked_fill(stop[:, None], 0))
    return filtered.real.to(images.dtype)
