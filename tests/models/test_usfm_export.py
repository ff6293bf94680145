"""Exporting a UsfmViT in the official USFM_latest.pth layout, and loading the export back."""

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.models import create_backbone, load_backbone_weights, save_backbone_weights
from sonofm.models.usfm_export import export_usfm_checkpoint

SHARED_TABLE_KEY = "rel_pos_bias.relative_position_bias_table"


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add noise to every parameter (tables and gammas too) so that no tensor keeps its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def test_base_export_has_exactly_the_official_keys_and_shapes(tmp_path, usfm_latest_shapes):
    model = create_backbone("usfm_vit_base_patch16", shared_rel_pos_bias=True)
    path = export_usfm_checkpoint(model, tmp_path / "out" / "USFM_latest.pth")
    assert path == tmp_path / "out" / "USFM_latest.pth"
    assert [p.name for p in path.parent.iterdir()] == ["USFM_latest.pth"]  # no temporary file left
    exported = torch.load(path, map_location="cpu", weights_only=True)
    assert type(exported) is dict
    assert list(exported) == list(usfm_latest_shapes)
    assert {key: list(value.shape) for key, value in exported.items()} == usfm_latest_shapes
    assert all(value.device.type == "cpu" and value.is_contiguous() for value in exported.values())
    assert torch.equal(exported[SHARED_TABLE_KEY], model.rel_pos_bias.relative_position_bias_table)


def test_tiny_export_round_trips_into_shared_and_per_block_models(tmp_path, tiny_vit):
    source = randomize(create_backbone("usfm_vit_base_patch16", img_size=64, shared_rel_pos_bias=True, **tiny_vit), 1)
    path = export_usfm_checkpoint(source, tmp_path / "tiny.pth")
    exported = torch.load(path, weights_only=True)
    assert exported[SHARED_TABLE_KEY].shape == (7 * 7 + 3, 4)  # the model's own 4x4 grid
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source.forward_features(x)
    for shared in (True, False):
        target = create_backbone("usfm_vit_base_patch16", img_size=64, shared_rel_pos_bias=shared, **tiny_vit).eval()
        report = load_backbone_weights(target, path)
        assert report.missing == [] and report.unexpected == [] and report.resized == {}
        assert list(report.ignored) == ([] if shared else [SHARED_TABLE_KEY])
        with torch.no_grad():
            assert torch.allclose(target.forward_features(x), expected, atol=1e-5), f"shared={shared}"


def test_per_block_model_exports_only_with_one_table(tmp_path, tiny_vit):
    model = create_backbone("usfm_vit_base_patch16", img_size=64, **tiny_vit)
    table = torch.randn(model.blocks[0].attn.relative_position_bias_table.shape)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.relative_position_bias_table.copy_(table)
    exported = torch.load(export_usfm_checkpoint(model, tmp_path / "same.pth"), weights_only=True)
    assert torch.equal(exported[SHARED_TABLE_KEY], table)
    assert not any(key.endswith("attn.relative_position_bias_table") for key in exported)

    with torch.no_grad():
        model.blocks[1].attn.relative_position_bias_table.add_(0.5)
    with pytest.raises(SonofmError) as error:
        export_usfm_checkpoint(model, tmp_path / "different.pth")
    message = str(error.value)
    assert message.startswith("cannot export in the official USFM layout: blocks.1.attn.relative_position_bias_table")
    assert "pretrain with shared_rel_pos_bias=True" in message
    assert not (tmp_path / "different.pth").exists()


def test_export_refuses_a_non_torch_suffix(tmp_path, tiny_vit):
    model = create_backbone("usfm_vit_base_patch16", img_size=64, shared_rel_pos_bias=True, **tiny_vit)
    with pytest.raises(SonofmError, match=r"USFM export path must end in \.pth, .*: .*model\.safetensors$"):
        export_usfm_checkpoint(model, tmp_path / "model.safetensors")


def test_safetensors_of_a_shared_model_round_trips(tmp_path, tiny_vit):
    source = randomize(create_backbone("usfm_vit_base_patch16", img_size=64, shared_rel_pos_bias=True, **tiny_vit), 2)
    path = tmp_path / "shared.safetensors"
    save_backbone_weights(source, path)
    loaded = create_backbone(
        "usfm_vit_base_patch16", img_size=64, weights=path, shared_rel_pos_bias=True, **tiny_vit
    ).eval()
    report = loaded.load_report
    assert report.missing == [] and report.unexpected == [] and report.ignored == {} and report.resized == {}
    assert SHARED_TABLE_KEY in report.loaded
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(x), source.forward_features(x))
