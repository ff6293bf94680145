"""The backbone registry and create_backbone: names, errors, kwargs overrides, and the shared interface."""

import pytest
import torch
from torch import nn

from sonofm.errors import SonofmError
from sonofm.models import Backbone, create_backbone, list_backbones, register_backbone

ALL_BACKBONES = [
    "resnet18",
    "resnet50",
    "timm_vit_base_patch16",
    "timm_vit_small_patch16",
    "timm_vit_tiny_patch16",
    "usfm_vit_base_patch16",
    "usfm_vit_small_patch16",
    "usfm_vit_tiny_patch16",
]


def test_registered_names():
    assert list_backbones() == ALL_BACKBONES


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(SonofmError) as error:
        create_backbone("usfm_vit_huge")
    assert str(error.value) == (f"unknown backbone 'usfm_vit_huge'; available: {', '.join(ALL_BACKBONES)}, "
                                "or timm/<name> for any timm model")


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice: resnet18"):
        register_backbone("resnet18", patch_size=32)(lambda img_size=224: nn.Identity())


@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_every_backbone_gives_tokens_with_prefix_first(name, tiny_vit):
    overrides = tiny_vit if "vit" in name else {"drop_path_rate": 0.1}
    model = create_backbone(name, img_size=64, **overrides).eval()
    with torch.no_grad():
        tokens = model.forward_tokens(torch.randn(2, 3, 64, 64))
    patches = 16 if "vit" in name else 4  # 64/16 squared, or C5 at stride 32
    assert tokens.shape == (2, model.num_prefix_tokens + patches, model.embed_dim)
    assert model.num_prefix_tokens == 1
    assert model.embed_dim == (64 if "vit" in name else {"resnet18": 512, "resnet50": 2048}[name])
    assert isinstance(model, Backbone)
    assert model.backbone_name == name and model.img_size == 64 and model.load_report is None
    ids = {model.layer_id(param_name) for param_name, _ in model.named_parameters()}
    assert ids == set(range(model.num_layer_ids))


@pytest.mark.parametrize(
    ("name", "dim", "heads"), [("usfm_vit_tiny_patch16", 192, 3), ("timm_vit_small_patch16", 384, 6)]
)
def test_variant_defaults_and_overrides(name, dim, heads):
    model = create_backbone(name, img_size=32, depth=1)
    assert (model.embed_dim, model.depth, model.blocks[0].attn.num_heads) == (dim, 1, heads)
