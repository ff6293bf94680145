"""USFM's spatial-frequency dual masked image modelling: one corrupted view, a ViT encoder, a light decoder, two losses.

Per image: remove random frequency rings (band-stop), hide random 32 px blocks, encode, decode the full image from
the patch tokens and compare it with the original in the image domain (L_spa) and in the amplitude spectrum (L_freq).

Choices where the paper is silent (see shared/research/usfm.md sections 2 and 7), and the field that changes each:
- hidden blocks are filled with the per-channel image mean, as the paper's figure and its "spatial mean masked"
  wording show (usfm.md section 7): ``fill="mean"``; ``"token"`` gives the encoder its learnable ``mask_token``
  there instead (SimMIM's way; the released weights carry one), ``"zero"`` zeros.
- mask geometry: 32 px blocks, 60 % of them, re-drawn per image and step (SimMIM ViT-B): ``mask_patch``,
  ``mask_ratio``.
- band-stop rings: the ring rule of the authors' leftover utility (10 rings at 224 px, radius 4 and below kept) and
  half of the rings removed per image, as the figure suggests: ``ring_*``, ``freq_ratio``.
- order: band-stop first, then the blocks are hidden in the filtered image (flat blocks over filtered texture, as
  drawn). The filtered image is the real part of the inverse FFT, not its magnitude, so normalised images work.
- L_spa: L1 on hidden pixels, SimMIM's normalisation (over all pixels when ``spatial`` is off): ``spatial_weight``.
- L_freq: L1 between log1p amplitude spectra (orthonormal FFT) over the whole spectrum: ``log_amplitude``,
  ``frequency_weight``; loss = weighted sum, weights 1 and 1.
- decoder: SimMIM's 1x1 conv to ``patch**2 * 3`` channels + pixel shuffle on the final-normed patch tokens.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sonofm.errors import SonofmError, raise_first_failure
from sonofm.methods.mim.losses import frequency_l1, masked_l1
from sonofm.methods.mim.masking import (
    apply_band_stop,
    band_stop_mask,
    fill_masked,
    patch_mask_to_pixels,
    random_block_mask,
    ring_edges,
)
from sonofm.models.heads.pixel_shuffle import PixelShuffleDecoder
from sonofm.models.layer_ids import LayersAboveBackbone
from sonofm.models.vit_helpers import tokens_to_map

FILLS = ("token", "mean", "zero")


@dataclass
class MimConfig:
    """Settings of the dual masked image modelling objective (defaults: module docstring)."""

    mask_patch: int = 32
    mask_ratio: float = 0.6
    spatial: bool = True
    fill: str = "mean"
    frequency: bool = True
    ring_base_width: int = 4
    ring_centre_protect: int = 4
    ring_increase_factor: float = 0.5
    ring_max_increase: int = 16
    freq_ratio: float = 0.5
    spatial_weight: float = 1.0
    frequency_weight: float = 1.0
    log_amplitude: bool = True

    def rings(self, img_size: int) -> list[tuple[int, int]]:
        """The band-stop annuli for ``img_size`` px images (``ring_edges`` with this config's ring fields)."""
        return ring_edges(img_size, self.ring_base_width, self.ring_centre_protect, self.ring_increase_factor,
                          self.ring_max_increase)

    def checks(self, img_size: int, patch_size: int) -> list[tuple[bool, str]]:
        """``(ok, message)`` pairs for ``img_size`` px images and an encoder with ``patch_size`` px patches."""
        checks = [
            (self.spatial or self.frequency, "at least one of spatial and frequency masking must be on"),
            (0 < self.mask_ratio < 1, f"mask_ratio must be in (0, 1), got {self.mask_ratio}"),
            (self.fill in FILLS, f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}"),
            (0 < self.freq_ratio <= 1, f"freq_ratio must be in (0, 1], got {self.freq_ratio}"),
            (self.ring_base_width >= 1, f"ring_base_width must be >= 1, got {self.ring_base_width}"),
            (self.ring_centre_protect >= 0, f"ring_centre_protect must be >= 0, got {self.ring_centre_protect}"),
            (self.ring_increase_factor > 0, f"ring_increase_factor must be > 0, got {self.ring_increase_factor}"),
            (self.ring_max_increase >= 1, f"ring_max_increase must be >= 1, got {self.ring_max_increase}"),
            (self.spatial_weight >= 0, f"spatial_weight must be >= 0, got {self.spatial_weight}"),
            (self.frequency_weight >= 0, f"frequency_weight must be >= 0, got {self.frequency_weight}"),
            (self.spatial_weight > 0 or (self.frequency and self.frequency_weight > 0),
             "the loss is zero: set spatial_weight > 0, or frequency on with frequency_weight > 0"),
            (not self.spatial or (self.mask_patch > 0 and self.mask_patch % patch_size == 0),
             f"mask_patch must be a positive multiple of the encoder's patch size {patch_size}, got {self.mask_patch}"),
            (not self.spatial or self.mask_patch <= 0 or img_size % self.mask_patch == 0,
             f"--img-size {img_size} is not a multiple of mask_patch {self.mask_patch}"),
        ]
        if self.frequency and all(ok for ok, _ in checks):
            count = int(self.freq_ratio * len(self.rings(img_size)))
            checks.append((count > 0, f"no band-stop ring to remove at {img_size} px with freq_ratio "
                                      f"{self.freq_ratio}; raise freq_ratio or lower ring_base_width"))
        return checks

    def validate(self, img_size: int, patch_size: int) -> None:
        """Raise SonofmError for the first bad value (``checks``); a run config checks these with its own."""
        raise_first_failure(self.checks(img_size, patch_size))


class MaskedImageModel(LayersAboveBackbone, nn.Module):
    """Encoder + ``PixelShuffleDecoder`` trained to rebuild images from their spatially and spectrally masked view.

    ``encoder``: a ViT backbone with ``forward_tokens``, ``norm``, ``num_prefix_tokens``, ``grid_size``,
    ``patch_size``, ``img_size``, ``embed_dim``, ``layer_id`` and ``num_layer_ids`` (a UsfmViT; ``fill="token"``
    also needs its ``mask_token`` and ``forward_tokens(x, mask)``). Parameter names are ``encoder.*`` and
    ``decoder.*``, so the saved encoder loads as a backbone once ``encoder.`` is stripped. ``config`` is validated
    against the encoder's geometry by the run config (``MimPretrainConfig``).
    """

    backbone_attribute = "encoder"

    def __init__(self, encoder: nn.Module, config: MimConfig | None = None) -> None:
        super().__init__()
        self.config = config or MimConfig()
        assert not self.config.spatial or (
            self.config.mask_patch % encoder.patch_size == 0 and encoder.img_size % self.config.mask_patch == 0
        ), f"mask_patch {self.config.mask_patch} must divide img_size {encoder.img_size} into whole patches"
        if self.config.spatial and self.config.fill == "token" and not hasattr(encoder, "mask_token"):
            raise SonofmError(f"fill='token' needs an encoder with a mask token (usfm_vit_*), "
                              f"{type(encoder).__name__} has none; use fill='mean'")
        self.encoder = encoder
        if hasattr(encoder, "mask_token"):  # trained only where hidden patches are filled with it
            encoder.mask_token.requires_grad_(self.config.spatial and self.config.fill == "token")
        self.decoder = PixelShuffleDecoder(encoder.embed_dim, encoder.patch_size)
        self.rings = self.config.rings(encoder.img_size) if self.config.frequency else []

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Images ``(B, 3, H, W)`` (normalised) -> losses and pictures.

        Keys: ``loss`` (weighted sum), ``loss_spatial``, ``loss_frequency`` (only with ``frequency``),
        ``reconstruction`` and ``corrupted`` (what the encoder saw; token-masked blocks are not painted in it)
        ``(B, 3, H, W)``, ``pixel_mask`` ``(B, 1, H, W)`` (1 on hidden pixels; all 0 without ``spatial``).
        Masks are drawn on the images' device from ``generator`` (which must live there) or the global RNG.
        """
        config = self.config
        batch, _, height, width = images.shape
        corrupted = images
        if config.frequency:
            stop = band_stop_mask(batch, height, self.rings, config.freq_ratio, generator, images.device)
            corrupted = apply_band_stop(corrupted, stop)
        token_mask = None
        pixel_mask = images.new_zeros(batch, 1, height, width, dtype=torch.float32)
        if config.spatial:
            patch_mask = random_block_mask(batch, height, config.mask_patch, self.encoder.patch_size,
                                           config.mask_ratio, generator, images.device)
            pixel_mask = patch_mask_to_pixels(patch_mask, self.encoder.grid_size, self.encoder.patch_size)
            if config.fill == "token":
                token_mask = patch_mask
            else:
                corrupted = fill_masked(corrupted, pixel_mask, config.fill)
        reconstruction = self.reconstruct(corrupted, token_mask)
        outputs = {"reconstruction": reconstruction, "corrupted": corrupted, "pixel_mask": pixel_mask}
        if config.spatial:
            outputs["loss_spatial"] = masked_l1(reconstruction, images, pixel_mask)
        else:
            outputs["loss_spatial"] = (reconstruction.float() - images.float()).abs().mean()
        outputs["loss"] = config.spatial_weight * outputs["loss_spatial"]
        if config.frequency:
            outputs["loss_frequency"] = frequency_l1(reconstruction, images, config.log_amplitude)
            outputs["loss"] = outputs["loss"] + config.frequency_weight * outputs["loss_frequency"]
        return outputs

    def reconstruct(self, corrupted: Tensor, token_mask: Tensor | None = None) -> Tensor:
        """Corrupted images ``(B, 3, H, W)`` (+ bool patch mask ``(B, N)`` for the mask token) -> ``(B, 3, H, W)``."""
        if token_mask is None:
            tokens = self.encoder.forward_tokens(corrupted)
        else:
            tokens = self.encoder.forward_tokens(corrupted, mask=token_mask)
        patches = self.encoder.norm(tokens)[:, self.encoder.num_prefix_tokens :]
        return self.decoder(tokens_to_map(patches, self.encoder.grid_size))
