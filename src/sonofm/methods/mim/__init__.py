"""USFM's spatial-frequency dual masked image modelling (SimMIM lineage): masks, losses and the trainable model."""

from sonofm.methods.mim.losses import frequency_l1, masked_l1
from sonofm.methods.mim.masking import (
    apply_band_stop,
    band_stop_mask,
    fill_masked,
    patch_mask_to_pixels,
    random_block_mask,
    ring_edges,
)
from sonofm.methods.mim.model import MaskedImageModel, MimConfig, PixelShuffleDecoder

__all__ = [
    "MaskedImageModel",
    "MimConfig",
    "PixelShuffleDecoder",
    "apply_band_stop",
    "band_stop_mask",
    "fill_masked",
    "frequency_l1",
    "masked_l1",
    "patch_mask_to_pixels",
    "random_block_mask",
    "ring_edges",
]
