"""ImageEnhancer: shapes, identity at initialisation, determinism, layer ids, refusal of a non-ViT backbone."""

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.models import create_backbone
from sonofm.models.enhancer import ImageEnhancer


@pytest.fixture(scope="module")
def enhancer():
    torch.manual_seed(0)
    return ImageEnhancer(create_backbone("usfm_vit_tiny_patch16", img_size=32, depth=2)).eval()


def test_untrained_enhancer_returns_its_input_with_the_same_shape(enhancer):
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        restored = enhancer(images)
    assert restored.shape == images.shape
    torch.testing.assert_close(restored, images)


def test_forward_is_deterministic_and_every_part_gets_gradients(enhancer):
    torch.nn.init.normal_(enhancer.refine[-1].weight, std=0.01)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(enhancer(images), enhancer(images))
    enhancer.train()
    enhancer(images).square().mean().backward()
    assert enhancer.decoder.proj.weight.grad is not None
    assert enhancer.backbone.blocks[0].attn.qkv.weight.grad is not None
    enhancer.eval()
    assert enhancer.layer_id("decoder.proj.weight") == enhancer.backbone.num_layer_ids - 1  # the ViT's top id
    assert enhancer.layer_id("refine.0.weight") == enhancer.num_layer_ids - 1


def test_a_backbone_without_block_outputs_is_refused():
    with pytest.raises(SonofmError, match="ViT backbone"):
        ImageEnhancer(torch.nn.Conv2d(3, 3, 1))
