"""Necks and decode heads: segmentation (UPerNet, SegViT's ATM, a light upsampling head, a U-Net decoder) and the
pixel-shuffle image decoder (MIM reconstruction, enhancement)."""

from sonofm.models.heads.atm import ATMHead, ATMLoss, atm_class_scores
from sonofm.models.heads.linear import ProgressiveUpsamplingHead
from sonofm.models.heads.pixel_shuffle import PixelShuffleDecoder
from sonofm.models.heads.unet import UNetDecoder
from sonofm.models.heads.upernet import FcnAuxHead, UperNetHead
from sonofm.models.heads.vit_neck import ViTPyramidNeck, vit_feature_indices

__all__ = [
    "ATMHead",
    "ATMLoss",
    "FcnAuxHead",
    "PixelShuffleDecoder",
    "ProgressiveUpsamplingHead",
    "UNetDecoder",
    "UperNetHead",
    "ViTPyramidNeck",
    "atm_class_scores",
    "vit_feature_indices",
]
