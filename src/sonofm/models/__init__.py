"""Backbones (USFM ViT, timm ViT, ResNet), their registry, and loading/saving their weights."""

from sonofm.models.backbone import Backbone
from sonofm.models.factory import create_backbone, img_size_check, patch_size_of
from sonofm.models.registry import list_backbones, register_backbone
from sonofm.models.usfm_vit import UsfmViT
from sonofm.models.weights import LoadReport, load_backbone_weights, save_backbone_weights

__all__ = [
    "Backbone",
    "LoadReport",
    "UsfmViT",
    "create_backbone",
    "img_size_check",
    "list_backbones",
    "load_backbone_weights",
    "patch_size_of",
    "register_backbone",
    "save_backbone_weights",
]
