"""The timm ViT and torchvision ResNet backbones: same numbers as their libraries, sonofm's token interface."""

import pytest
import torch
import torchvision
from timm.layers import DropPath
from timm.models.vision_transformer import VisionTransformer

from sonofm.errors import SonofmError
from sonofm.models import create_backbone


def test_timm_vit_tokens_are_timm_features_before_the_final_norm(tiny_vit):
    model = create_backbone("timm_vit_small_patch16", img_size=64, **tiny_vit).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = model.forward_tokens(x)
        timm_features = VisionTransformer.forward_features(model, x)
        maps = model.forward_intermediates(x, [1])
    assert tokens.shape == (2, 17, 64)
    assert torch.allclose(model.norm(tokens), timm_features, atol=1e-6)
    assert torch.equal(maps[0], tokens[:, 1:].transpose(1, 2).reshape(2, 64, 4, 4))
    assert (model.num_prefix_tokens, model.grid_size, model.embed_dim) == (1, (4, 4), 64)


def test_timm_vit_variants_and_layer_ids(tiny_vit):
    model = create_backbone("timm_vit_tiny_patch16", img_size=32, **tiny_vit)
    assert model.pos_embed.shape == (1, 1 + 4, 64)
    assert [model.layer_id(name) for name in ("cls_token", "pos_embed", "patch_embed.proj.weight")] == [0, 0, 0]
    assert [model.layer_id(name) for name in ("blocks.0.mlp.fc1.weight", "blocks.1.norm1.bias", "norm.weight")] == [
        1, 2, 3,
    ]
    assert model.num_layer_ids == 4
    with pytest.raises(SonofmError, match="input 64x64 but the model was built for 32x32; pass --img-size 64"):
        model.forward_tokens(torch.randn(1, 3, 64, 64))


def test_resnet_matches_torchvision_and_builds_tokens_from_c5():
    channels = [64, 128, 256, 512]
    model = create_backbone("resnet18").eval()
    reference = torchvision.models.resnet18(weights=None).eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        pyramid = model.forward_pyramid(x)
        tokens = model.forward_tokens(x)
        stem = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        c5 = reference.layer4(reference.layer3(reference.layer2(reference.layer1(stem))))
    assert [tuple(level.shape) for level in pyramid] == [
        (2, channels[0], 24, 16), (2, channels[1], 12, 8), (2, channels[2], 6, 4), (2, channels[3], 3, 2),
    ]
    assert model.pyramid_channels == channels and model.embed_dim == channels[-1]
    assert torch.allclose(pyramid[-1], c5, atol=1e-5)
    assert tokens.shape == (2, 1 + 6, channels[-1])
    assert torch.equal(tokens[:, 1:], pyramid[-1].flatten(2).transpose(1, 2))
    assert torch.allclose(tokens[:, 0], tokens[:, 1:].mean(dim=1), atol=1e-6)
    assert not any(key.startswith(("fc.", "avgpool")) for key in model.state_dict())


def test_resnet50_pyramid_channels():
    model = create_backbone("resnet50").eval()
    with torch.no_grad():
        pyramid = model.forward_pyramid(torch.randn(1, 3, 64, 64))
    assert [tuple(level.shape[1:]) for level in pyramid] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    assert model.pyramid_channels == [256, 512, 1024, 2048] and model.embed_dim == 2048


def test_resnet_drop_path_rises_linearly_and_layer_ids():
    model = create_backbone("resnet18", drop_path_rate=0.3)
    units = [unit for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for unit in stage]
    assert not isinstance(units[0].drop_path, DropPath)
    assert [unit.drop_path.drop_prob for unit in units[1:]] == pytest.approx([0.3 * i / 7 for i in range(1, 8)])
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert ids["conv1.weight"] == ids["bn1.bias"] == 0
    assert ids["layer1.0.conv1.weight"] == 1 and ids["layer4.1.bn2.weight"] == 4
    assert sorted(set(ids.values())) == [0, 1, 2, 3, 4] and model.num_layer_ids == 5
