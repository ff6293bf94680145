"""Segmenter: every head on ViT and ResNet backbones, losses, ignored pixels, parameter groups, USFM weights."""

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.models import create_backbone, load_backbone_weights
from sonofm.models.segmenter import SEG_HEADS, Segmenter

VIT = "usfm_vit_tiny_patch16"
VIT_HEADS = ("upernet", "segvit", "linear")
# Small heads for the training tests; the shape tests use the defaults.
SMALL_HEADS = {
    "upernet": {"channels": 32},
    "segvit": {"dim": 32, "num_heads": 2, "num_layers": 1},
    "linear": {"channels": 32},
    "unet": {"decoder_channels": (32, 16, 8)},
}
SHAPE_CASES = [(VIT, 64, head) for head in VIT_HEADS] + [(VIT, 96, head) for head in VIT_HEADS]
SHAPE_CASES += [("resnet18", 64, head) for head in SEG_HEADS]


def build(backbone: str, head: str, img_size: int = 64, num_classes: int = 3, **head_args) -> Segmenter:
    torch.manual_seed(0)
    return Segmenter(create_backbone(backbone, img_size=img_size), num_classes, head=head, **head_args)


def square_masks(size: int = 64) -> torch.Tensor:
    """Two label maps: background 0, a centred square of class 1, class 2 on image 1's left edge, 255 on top rows."""
    masks = torch.zeros(2, size, size, dtype=torch.long)
    masks[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    masks[1, :, :8] = 2
    masks[0, :4] = 255
    return masks


@pytest.mark.parametrize(("backbone", "img_size", "head"), SHAPE_CASES)
def test_output_and_score_shapes(backbone, img_size, head):
    model = build(backbone, head, img_size).eval()
    images = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        outputs = model(images)
        scores = model.predict(images)
        small = model.class_scores(outputs, (10, 12))
    quarter = img_size // 4
    if head == "segvit":
        mask_size = quarter if backbone == VIT else img_size // 8  # ResNet: C3..C5, finest stride 8
        assert outputs["mask_logits"].shape == (2, 3, mask_size, mask_size)
        assert outputs["class_logits"].shape == (2, 3, 4)
        assert [tuple(aux["mask_logits"].shape) for aux in outputs["aux"]] == [(2, 3, mask_size, mask_size)] * 2
        assert ((scores >= 0) & (scores <= 1)).all()
    else:
        assert outputs["logits"].shape == (2, 3, quarter, quarter)
        assert torch.allclose(scores.sum(dim=1), torch.ones(2, img_size, img_size), atol=1e-5)
    if head == "upernet":  # the auxiliary head runs in training mode only
        assert "aux_logits" not in outputs
        with torch.no_grad():
            training_outputs = model.train()(images)
        assert training_outputs["aux_logits"].shape == (2, 3, img_size // 16, img_size // 16)
    assert scores.shape == (2, 3, img_size, img_size)
    assert small.shape == (2, 3, 10, 12)


def test_default_head_sizes_follow_the_backbone():
    assert build(VIT, "upernet").head.classifier.in_channels == 96
    assert build("resnet18", "upernet").head.classifier.in_channels == 128
    atm = build(VIT, "segvit").head
    assert (atm.queries.embedding_dim, atm.stages[0].layers[0].cross_attn.num_heads, len(atm.stages)) == (96, 3, 3)
    assert len(atm.stages[0].layers) == 3
    assert build("resnet18", "segvit").head.queries.embedding_dim == 256
    assert build(VIT, "linear").head.classifier.in_channels == 192
    assert build(VIT, "upernet", channels=64).head.classifier.in_channels == 64


def test_feature_taps_follow_usfm():
    assert build(VIT, "upernet").taps == [3, 5, 7, 11]
    assert build(VIT, "segvit").taps == [5, 7, 11]
    assert build(VIT, "linear").taps == [11]
    assert build(VIT, "linear").neck is None
    assert build("resnet18", "segvit").taps == [1, 2, 3]


def test_unknown_head_and_mismatches_are_refused():
    valid = "upernet, segvit, linear, unet"
    with pytest.raises(SonofmError, match=rf"^unknown segmentation head 'fcn'; valid heads: {valid}$"):
        build(VIT, "fcn")
    with pytest.raises(SonofmError, match=r"head 'unet' needs a ResNet backbone .* not 'usfm_vit_tiny_patch16'; "
                                          r"valid heads for it: upernet, segvit, linear$"):
        build(VIT, "unet")
    with pytest.raises(SonofmError, match=r"head 'linear' does not accept these options \['focal_weight'\]"):
        build(VIT, "linear", focal_weight=3.0)
    assert build(VIT, "segvit", dim=32, num_heads=2, focal_weight=3.0).criterion.term_weights["focal"] == 3.0


@pytest.mark.parametrize("head", SEG_HEADS)
def test_parameter_names_and_layer_ids(head):
    backbone_name = "resnet18" if head == "unet" else VIT
    model = build(backbone_name, head, **SMALL_HEADS[head])
    backbone = model.backbone
    names = [name for name, _ in model.named_parameters()]
    own_names = [f"backbone.{name}" for name, _ in backbone.named_parameters()]
    assert [name for name in names if name.startswith("backbone.")] == own_names
    roots = {name.partition(".")[0] for name in names}
    expected_roots = {"backbone", "head"} | ({"neck"} if head in ("upernet", "segvit") else set())
    assert roots == expected_roots | ({"aux_head"} if head == "upernet" else set())
    above = backbone.num_layer_ids - 1 if head != "unet" else backbone.num_layer_ids  # a ViT's top id, or above layer4
    assert model.num_layer_ids == above + 1
    for name in names:
        expected = backbone.layer_id(name.removeprefix("backbone.")) if name.startswith("backbone.") else above
        assert model.layer_id(name) == expected
    assert model.layer_id("backbone.conv1.weight" if head == "unet" else "backbone.cls_token") == 0


OVERFIT_CASES = [(VIT, head) for head in VIT_HEADS] + [("resnet18", "unet"), ("resnet18", "segvit")]


@pytest.mark.parametrize(("backbone", "head"), OVERFIT_CASES)
def test_loss_falls_when_overfitting_two_images(backbone, head):
    model = build(backbone, head, **SMALL_HEADS[head])
    images, masks = torch.randn(2, 3, 64, 64), square_masks()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        terms = model.loss(model(images), masks)
        assert all(torch.isfinite(value) and value.dtype == torch.float32 for value in terms.values())
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.75 * losses[0]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_cross_entropy_terms_and_aux_weight():
    model = build(VIT, "upernet", aux_weight=0.25, **SMALL_HEADS["upernet"]).train()  # the aux head runs in training
    with torch.no_grad():
        terms = model.loss(model(torch.randn(2, 3, 64, 64)), square_masks())
    assert set(terms) == {"loss", "ce", "aux_ce"}
    assert torch.allclose(terms["loss"], terms["ce"] + 0.25 * terms["aux_ce"])


@pytest.mark.parametrize("head", VIT_HEADS)
def test_predictions_under_ignored_pixels_do_not_change_the_loss(head):
    model = build(VIT, head, **SMALL_HEADS[head]).train()  # training mode: upernet's aux logits are checked too
    masks = square_masks()
    masks[:, :, :32] = 255  # left half ignored
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 64))
    # Stride-4 maps: columns 0..6 only reach pixels 0..29 after the bilinear resize; stride 16: column 0 only.
    changed = {"logits": 7, "mask_logits": 7, "aux_logits": 1}
    perturbed = dict(outputs)
    if "aux" in outputs:
        perturbed["aux"] = [dict(aux) for aux in outputs["aux"]]
    for stage in [perturbed, *perturbed.get("aux", [])]:
        for key in changed.keys() & stage.keys():
            stage[key] = stage[key].clone()
            stage[key][..., : changed[key]] = torch.randn_like(stage[key][..., : changed[key]]) * 10
    before, after = model.loss(outputs, masks), model.loss(perturbed, masks)
    for name in before:
        assert torch.allclose(before[name], after[name], atol=1e-6), name
    key = "mask_logits" if head == "segvit" else "logits"
    perturbed[key][..., 8:] += 5 * torch.randn_like(perturbed[key][..., 8:])
    assert not torch.allclose(model.loss(perturbed, masks)["loss"], before["loss"])


@pytest.mark.parametrize("head", ("upernet", "segvit"))
def test_loss_is_float32_under_bf16_autocast(head):
    model = build(VIT, head, **SMALL_HEADS[head])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(torch.randn(2, 3, 64, 64))
        terms = model.loss(outputs, square_masks())
    assert {value.dtype for value in terms.values()} == {torch.float32}
    terms["loss"].backward()


@pytest.mark.slow
def test_official_usfm_weights_load_into_every_vit_head_at_512(official_checkpoint):
    path, official = official_checkpoint
    for head in VIT_HEADS:
        model = Segmenter(create_backbone("usfm_vit_base_patch16", img_size=512), num_classes=2, head=head)
        report = load_backbone_weights(model.backbone, path)
        assert report.missing == [] and report.unexpected == []
        assert list(report.ignored) == ["rel_pos_bias.relative_position_bias_table"]  # copied into every block
        state = model.state_dict()
        for index in range(12):
            for key in ("attn.q_bias", "attn.v_bias", "gamma_1", "gamma_2"):  # what the reference SegViT dropped
                assert torch.equal(state[f"backbone.blocks.{index}.{key}"], official[f"blocks.{index}.{key}"])
        assert torch.equal(state["backbone.patch_embed.proj.weight"], official["patch_embed.proj.weight"])
    model.eval()  # one forward, with the last (lightest) head
    with torch.no_grad():
        scores = model.predict(torch.randn(1, 3, 512, 512))
    assert scores.shape == (1, 2, 512, 512) and torch.isfinite(scores).all()
