"""Segmentation necks and heads on their own: block taps, shapes, the ATM attention and the ATM loss by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from sonofm.errors import SonofmError
from sonofm.models.heads import (
    ATMHead,
    ATMLoss,
    FcnAuxHead,
    ProgressiveUpsamplingHead,
    UNetDecoder,
    UperNetHead,
    ViTPyramidNeck,
    atm_class_scores,
    vit_feature_indices,
)
from sonofm.models.heads.atm import AttentionWithLogits, class_masks, class_targets


@pytest.mark.parametrize(
    ("depth", "count", "expected"),
    [(12, 4, [3, 5, 7, 11]), (12, 3, [5, 7, 11]), (12, 1, [11]), (6, 4, [1, 2, 3, 5]), (6, 3, [2, 3, 5]),
     (24, 4, [7, 11, 15, 23]), (24, 3, [11, 15, 23]), (3, 3, [0, 1, 2])],
)
def test_vit_feature_indices(depth, count, expected):
    assert vit_feature_indices(depth, count) == expected


def test_vit_feature_indices_refuses_too_shallow_a_backbone():
    with pytest.raises(SonofmError, match="a 2-block backbone has too few blocks for 3 feature maps"):
        vit_feature_indices(2, 3)


def test_vit_pyramid_neck_makes_strides_4_to_32():
    maps = [torch.randn(2, 32, 6, 6) for _ in range(4)]
    pyramid = ViTPyramidNeck(32)(maps)
    assert [tuple(level.shape) for level in pyramid] == [(2, 32, 24, 24), (2, 32, 12, 12), (2, 32, 6, 6), (2, 32, 3, 3)]
    assert torch.equal(pyramid[2], maps[2])
    assert torch.equal(pyramid[3], F.max_pool2d(maps[3], 2))
    projected = ViTPyramidNeck(32, out_channels=16, strides=(4, 8, 16))(maps[:3])
    assert [tuple(level.shape) for level in projected] == [(2, 16, 24, 24), (2, 16, 12, 12), (2, 16, 6, 6)]


def test_upernet_and_fcn_heads_give_stride_4_and_input_stride_logits():
    pyramid = [torch.randn(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate((8, 16, 24, 32))]
    head = UperNetHead([8, 16, 24, 32], num_classes=5, channels=16)
    assert head(pyramid).shape == (2, 5, 32, 32)
    assert FcnAuxHead(24, num_classes=5, channels=8)(pyramid[2]).shape == (2, 5, 8, 8)


@pytest.mark.parametrize(("in_stride", "size", "steps"), [(16, 4, 2), (32, 2, 3)])
def test_progressive_upsampling_head_reaches_stride_4(in_stride, size, steps):
    head = ProgressiveUpsamplingHead(12, num_classes=3, in_stride=in_stride, channels=8)
    assert len(head.steps) == steps
    assert head(torch.randn(2, 12, size, size)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="in_stride must be 4 times a power of 2"):
        ProgressiveUpsamplingHead(12, 3, in_stride=12)


def test_unet_decoder_merges_the_pyramid_to_stride_4():
    pyramid = [torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate((4, 8, 16, 32))]
    decoder = UNetDecoder([4, 8, 16, 32], num_classes=3, decoder_channels=(16, 8, 4))
    assert decoder(pyramid).shape == (2, 3, 16, 16)


def test_attention_returns_head_averaged_pre_softmax_logits():
    torch.manual_seed(0)
    attention = AttentionWithLogits(dim=8, num_heads=2, dropout=0.0)
    queries, tokens = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    output, logits = attention(queries, tokens)
    q = attention.q_proj(queries).view(1, 3, 2, 4).transpose(1, 2)
    k = attention.k_proj(tokens).view(1, 5, 2, 4).transpose(1, 2)
    v = attention.v_proj(tokens).view(1, 5, 2, 4).transpose(1, 2)
    assert torch.allclose(logits, (q @ k.transpose(-2, -1) / 2).mean(dim=1), atol=1e-6)
    expected = attention.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 3, 8))
    assert torch.allclose(output, expected, atol=1e-6)


def test_atm_head_accumulates_stage_masks_at_the_finest_stride():
    torch.manual_seed(0)
    head = ATMHead([16, 16, 16], num_classes=4, dim=16, num_heads=2, num_layers=2).eval()
    features = [torch.randn(2, 16, 16 // 2**i, 16 // 2**i) for i in range(3)]  # fine to coarse
    stage_outputs = []  # (queries, mask logits) per stage, in the order they ran
    for stage in head.stages:
        stage.register_forward_hook(lambda module, args, output: stage_outputs.append(output))
    with torch.no_grad():
        outputs = head(features)
        queries, masks = zip(*stage_outputs, strict=True)
        assert [tuple(mask.shape) for mask in masks] == [(2, 4, 4, 4), (2, 4, 8, 8), (2, 4, 16, 16)]
        first, second = outputs["aux"]
        assert torch.allclose(first["mask_logits"], F.interpolate(masks[0], size=(16, 16), mode="bilinear"))
        assert torch.allclose(
            second["mask_logits"], first["mask_logits"] + F.interpolate(masks[1], size=(16, 16), mode="bilinear")
        )
        assert torch.allclose(outputs["mask_logits"], second["mask_logits"] + masks[2])
        assert outputs["class_logits"].shape == (2, 4, 5)
        assert torch.equal(outputs["class_logits"], head.class_embed(queries[2]))
        assert torch.equal(first["class_logits"], head.class_embed(queries[0]))


def test_atm_class_scores_weigh_masks_by_class_probability():
    class_logits = torch.log(torch.tensor([[[3.0, 1.0, 1e-12], [1.0, 1.0, 2.0]]]))  # probabilities: /4 per row
    mask_logits = torch.tensor([[[[0.0]], [[math.inf]]]])  # sigmoid: 0.5 and 1
    scores = atm_class_scores(class_logits, mask_logits)
    assert torch.allclose(scores.flatten(), torch.tensor([0.75 * 0.5 + 0.25, 0.25 * 0.5 + 0.25]))


def test_class_targets_use_no_object_for_absent_and_ignored_classes():
    masks = torch.tensor([[[0, 2, 255], [2, 2, 255]], [[1, 1, 1], [255, 255, 255]]])
    present = class_masks(masks, num_classes=3, ignore_index=255).flatten(2).any(dim=-1)
    assert class_targets(present).tolist() == [[0, 3, 2], [3, 1, 3]]


def perfect_outputs(masks: torch.Tensor, num_classes: int, class_logits: torch.Tensor) -> dict:
    """ATM outputs whose mask logits are +-30 exactly on each class's pixels, the same for two aux stages."""
    mask_logits = class_masks(masks, num_classes, ignore_index=255).float() * 60 - 30
    stage = {"mask_logits": mask_logits, "class_logits": class_logits}
    return {**stage, "aux": [dict(stage), dict(stage)]}


def test_atm_loss_by_hand():
    masks = torch.tensor([[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 255, 255], [0, 0, 255, 255]]])  # class 1 absent
    # query 0 (target class 0) predicts uniformly over 3 columns; query 1 (target no-object) puts 2:1:1 on them.
    class_logits = torch.log(torch.tensor([[[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]]]))
    outputs = perfect_outputs(masks, 2, class_logits)
    terms = ATMLoss()(outputs, masks)
    expected_cls = (math.log(3) + 0.1 * math.log(4)) / (1 + 0.1)  # no-object weighted 0.1
    assert terms["cls"].item() == pytest.approx(expected_cls, rel=1e-6)
    assert terms["dice"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["focal"].item() == pytest.approx(0.0, abs=1e-6)
    assert set(terms) == {"loss", "cls", "focal", "dice", "cls_0", "focal_0", "dice_0", "cls_1", "focal_1", "dice_1"}
    assert terms["loss"].item() == pytest.approx(3 * expected_cls, rel=1e-5)
    assert ATMLoss(no_object_weight=1.0)(outputs, masks)["cls"].item() == pytest.approx(math.log(12) / 2, rel=1e-6)

    # Wrong mask logits under the ignored pixels change nothing; on a labelled pixel they do.
    outputs["mask_logits"] = outputs["mask_logits"].clone()
    outputs["mask_logits"][0, 0, 2:, 2:] = -30
    assert ATMLoss()(outputs, masks)["dice"].item() == pytest.approx(0.0, abs=1e-6)
    outputs["mask_logits"][0, 0, 0, 0] = -30
    wrong = ATMLoss()(outputs, masks)
    assert wrong["dice"].item() == pytest.approx(1 - (2 * 11 + 1) / (11 + 12 + 1), rel=1e-5)
    assert wrong["focal"].item() == pytest.approx(0.25 * 30 / 12, rel=1e-3)  # alpha * BCE on 1 pixel of 12


def test_atm_loss_weights_and_float32_under_autocast():
    masks = torch.tensor([[[0, 1], [1, 1]]])
    outputs = perfect_outputs(masks, 2, torch.zeros(1, 2, 3))
    outputs["mask_logits"] = outputs["mask_logits"] * 0.01
    terms = ATMLoss(class_weight=2.0, focal_weight=5.0, dice_weight=3.0)(outputs, masks)
    assert terms["focal"] > terms["focal_0"] and terms["dice"] > terms["dice_0"]  # only the final masks are blurred
    expected = sum(2 * terms[f"cls{s}"] + 5 * terms[f"focal{s}"] + 3 * terms[f"dice{s}"] for s in ("", "_0", "_1"))
    assert torch.allclose(terms["loss"], expected)
    bf16 = outputs | {"mask_logits": outputs["mask_logits"].bfloat16(), "class_logits": torch.zeros(1, 2, 3).bfloat16()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert all(value.dtype == torch.float32 for value in ATMLoss()(bf16, masks).values())
