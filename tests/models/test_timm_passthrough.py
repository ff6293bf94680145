"""timm passthrough backbones (``timm/<name>``): timm's features as tokens, timm's layer groups, what each head
leaves unread, the feature pyramid for segmentation, local timm weights with the key report, one-line errors."""

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import group_parameters

from sonofm.errors import SonofmError
from sonofm.models import create_backbone
from sonofm.models.classifier import ImageClassifier
from sonofm.models.segmenter import Segmenter
from sonofm.report.gradcam import grad_cam
from sonofm.tasks.cls.freezing import freeze_backbone


def trainable(backbone) -> set[str]:
    return {name for name, param in backbone.named_parameters() if param.requires_grad}


def test_cnn_tokens_are_the_feature_map_behind_its_mean():
    backbone = create_backbone("timm/resnet10t", img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens, features = backbone.forward_tokens(x), backbone.forward_features(x)
        assert torch.equal(backbone(x), tokens)
    assert tokens.shape == (2, 1 + 4, 512) and features.shape == (2, 512, 2, 2)
    assert torch.equal(tokens[:, 1:], features.flatten(2).transpose(1, 2))
    assert torch.allclose(tokens[:, 0], tokens[:, 1:].mean(dim=1), atol=1e-6)
    assert (backbone.num_prefix_tokens, backbone.embed_dim, backbone.grid_size) == (1, 512, (2, 2))


def test_vit_tokens_are_timm_features_and_img_size_reaches_timm():
    backbone = create_backbone("timm/vit_tiny_patch16_224", img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone.forward_tokens(x), backbone.forward_features(x))
    assert backbone.pos_embed.shape == (1, 1 + 4, 192) and backbone.num_prefix_tokens == 1
    with pytest.raises(SonofmError, match="multiple of 16, the patch size of timm/vit_tiny_patch16_224, got 40"):
        create_backbone("timm/vit_tiny_patch16_224", img_size=40)


def test_layer_ids_are_timm_groups_and_the_modes_train_the_last_stage_or_block():
    backbone = create_backbone("timm/resnet10t", img_size=64)
    ids = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    assert {name: backbone.layer_id(name) for name, _ in backbone.named_parameters()} == ids
    assert (backbone.num_layer_ids, backbone.last_stage_layer_id, backbone.last_block_prefix) == (5, 4, "layer4.0.")
    freeze_backbone(backbone, "partial")
    assert trainable(backbone) == {name for name in ids if name.startswith("layer4.")}
    freeze_backbone(backbone, "linear")
    assert trainable(backbone) == set()
    vit = create_backbone("timm/vit_tiny_patch16_224", img_size=32)
    assert (vit.num_layer_ids, vit.last_stage_layer_id, vit.last_block_prefix) == (13, 12, "blocks.11.")
    assert [vit.layer_id(name) for name in ("cls_token", "blocks.0.attn.qkv.weight", "norm.weight")] == [0, 1, 12]
    freeze_backbone(vit, "last_block")
    assert trainable(vit) == {name for name, _ in vit.named_parameters() if name.startswith("blocks.11.")}


def test_heads_freeze_what_they_do_not_read():
    convnext = create_backbone("timm/convnext_atto", img_size=64)
    ImageClassifier(convnext, num_classes=3)  # timm's head norm is applied after pooling, outside forward_features
    assert {name for name, _ in convnext.named_parameters()} - trainable(convnext) == {"head.norm.weight",
                                                                                      "head.norm.bias"}
    vit = create_backbone("timm/vit_tiny_patch16_224", img_size=64)
    ImageClassifier(vit, num_classes=3)  # the tokens include the final norm, so it trains
    assert "norm.weight" in trainable(vit)
    Segmenter(vit, num_classes=3, head="linear")  # block outputs, before the final norm
    assert "norm.weight" not in trainable(vit) and "blocks.11.mlp.fc2.weight" in trainable(vit)


@pytest.mark.parametrize(("name", "head", "head_args", "logits_side"), [
    ("timm/convnext_atto", "upernet", {"channels": 16}, 16),
    ("timm/resnet10t", "unet", {"decoder_channels": (32, 16, 8)}, 16),
    ("timm/vit_tiny_patch16_224", "upernet", {"channels": 16}, 16),
])
def test_segmenters_read_the_timm_pyramid_or_the_vit_blocks(name, head, head_args, logits_side):
    segmenter = Segmenter(create_backbone(name, img_size=64), num_classes=3, head=head, **head_args)
    outputs = segmenter(torch.randn(2, 3, 64, 64))
    assert outputs["logits"].shape == (2, 3, logits_side, logits_side)
    segmenter.loss(outputs, torch.randint(0, 3, (2, 64, 64)))["loss"].backward()
    assert segmenter.eval().predict(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_a_model_without_usable_levels_cannot_segment():
    with pytest.raises(SonofmError, match=r"^timm/pit_ti_224 cannot feed a segmentation head: its feature levels are "
                                          r"at strides \[8, 16, 32\]"):
        Segmenter(create_backbone("timm/pit_ti_224", img_size=64), num_classes=3)


def test_local_timm_weights_load_with_the_key_report(tmp_path):
    reference = timm.create_model("resnet10t", pretrained=False, num_classes=5).eval()
    save_file({key: value.contiguous() for key, value in reference.state_dict().items()}, tmp_path / "r.safetensors")
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "r.pth")
    for path in (tmp_path / "r.safetensors", tmp_path / "r.pth"):
        backbone = create_backbone("timm/resnet10t", img_size=64, weights=path).eval()
        report = backbone.load_report
        assert sorted(report.loaded) == sorted(backbone.state_dict())
        assert report.ignored == {"fc.weight": "timm classifier head, not part of the backbone",
                                  "fc.bias": "timm classifier head, not part of the backbone"}
        assert not report.missing and not report.unexpected
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(backbone.forward_features(x), reference.forward_features(x))
    assert "loaded 84 tensors" in report.summary() and "timm classifier head" in report.summary()


def test_a_vit_file_of_another_size_is_resampled_by_timm(tmp_path):
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5)
    torch.save(reference.state_dict(), tmp_path / "vit.pth")
    backbone = create_backbone("timm/vit_tiny_patch16_224", img_size=32, weights=tmp_path / "vit.pth")
    assert backbone.load_report.resized == {"pos_embed": "resampled by timm's checkpoint filter from (1, 197, 192) "
                                                         "to (1, 5, 192)"}
    assert torch.equal(backbone.cls_token, reference.cls_token)


def test_a_file_of_another_model_names_its_keys(tmp_path):
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), tmp_path / "r.pth")
    with pytest.raises(SonofmError, match="does not fit backbone 'timm/convnext_atto': missing"):
        create_backbone("timm/convnext_atto", img_size=64, weights=tmp_path / "r.pth")


def test_unknown_names_and_refused_options_are_one_line_errors():
    with pytest.raises(SonofmError) as error:
        create_backbone("timm/convnxt_atto", img_size=64)
    message = str(error.value)
    assert message.startswith("unknown timm model 'convnxt_atto'; close matches: timm/convnext_atto")
    assert "timm.list_models(" in message and "\n" not in message
    with pytest.raises(SonofmError, match="Invalid pretrained tag"):
        create_backbone("timm/resnet10t.no_such_tag", img_size=64)
    with pytest.raises(SonofmError, match=r"model_args \['pretrained'\] are not passed to timm"):
        create_backbone("timm/resnet10t", img_size=64, pretrained=True)


def test_grad_cam_reads_the_last_feature_level():
    for name in ("timm/resnet10t", "timm/vit_tiny_patch16_224"):
        model = ImageClassifier(create_backbone(name, img_size=64), num_classes=3).eval()
        cams, logits = grad_cam(model, torch.randn(2, 3, 64, 64))
        assert cams.shape == (2, 64, 64) and logits.shape == (2, 3)
