"""UsfmViT with one relative position table shared by all blocks: forward, intermediates, gradients, loading."""

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.models import UsfmViT, create_backbone, load_backbone_weights, save_backbone_weights

SHARED_TABLE_KEY = "rel_pos_bias.relative_position_bias_table"


def tiny_shared(tiny_vit: dict[str, int], seed: int = 0) -> UsfmViT:
    """A tiny shared-table UsfmViT at 64 px with every parameter random (the table too), in eval mode."""
    model = create_backbone("usfm_vit_base_patch16", img_size=64, shared_rel_pos_bias=True, **tiny_vit).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


def tiny_per_block(tiny_vit: dict[str, int]) -> UsfmViT:
    return create_backbone("usfm_vit_base_patch16", img_size=64, **tiny_vit).eval()


def test_shared_model_has_exactly_one_table(tiny_vit):
    model = tiny_shared(tiny_vit)
    tables = [name for name, _ in model.named_parameters() if name.endswith("relative_position_bias_table")]
    assert tables == [SHARED_TABLE_KEY]
    assert model.rel_pos_bias.relative_position_bias_table.shape == (7 * 7 + 3, 4)
    assert all(block.attn.relative_position_bias_table is None for block in model.blocks)
    assert SHARED_TABLE_KEY in model.no_weight_decay()
    assert model.layer_id(SHARED_TABLE_KEY) == model.depth + 1


def test_registry_builds_a_shared_tiny_model():
    model = create_backbone("usfm_vit_tiny_patch16", img_size=64, shared_rel_pos_bias=True)
    assert model.shared_rel_pos_bias and model.rel_pos_bias is not None
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 17, 192)


@pytest.mark.parametrize("fused", [False, True], ids=["cpu-explicit", "fused-sdpa"])
def test_shared_forward_equals_per_block_model_with_that_table(tmp_path, monkeypatch, tiny_vit, fused):
    shared = tiny_shared(tiny_vit, seed=1)
    path = tmp_path / "shared.safetensors"
    save_backbone_weights(shared, path)
    per_block = tiny_per_block(tiny_vit)
    report = load_backbone_weights(per_block, path)
    assert report.missing == [] and report.unexpected == [] and list(report.ignored) == [SHARED_TABLE_KEY]
    for block in per_block.blocks:
        assert torch.equal(block.attn.relative_position_bias_table, shared.rel_pos_bias.relative_position_bias_table)
    if fused:  # the accelerator path (SDPA with the bias as a float mask), forced on the CPU
        for model in (shared, per_block):
            monkeypatch.setattr(model, "_select_attention_kernel", lambda device: None)
            for block in model.blocks:
                block.attn.fused_attn = True
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = per_block.forward_features(x), shared.forward_features(x)
    assert all(block.attn.fused_attn == fused for block in shared.blocks)
    assert torch.allclose(got, expected, atol=1e-5)


def test_forward_intermediates_and_checkpointing(tiny_vit):
    model = tiny_shared(tiny_vit, seed=2)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = model.forward_intermediates(x, [0, -1])
        tokens = model.forward_tokens(x)
    assert [tuple(m.shape) for m in maps] == [(1, 64, 4, 4), (1, 64, 4, 4)]
    assert torch.allclose(maps[1].flatten(2).transpose(1, 2), tokens[:, 1:], atol=1e-6)
    model.set_grad_checkpointing(True)
    model.train()
    model.forward_intermediates(x, [-1])[0].sum().backward()
    assert model.rel_pos_bias.relative_position_bias_table.grad.abs().sum() > 0


def test_gradients_reach_the_shared_table(tiny_vit):
    model = tiny_shared(tiny_vit, seed=3).train()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, ::3] = True
    model.forward_features(torch.randn(2, 3, 64, 64), mask).square().mean().backward()
    grad = model.rel_pos_bias.relative_position_bias_table.grad
    assert grad is not None and grad.abs().sum() > 0


def test_per_block_file_into_shared_model(tmp_path, tiny_vit):
    source = tiny_per_block(tiny_vit)
    with torch.no_grad():
        for block in source.blocks:
            block.attn.relative_position_bias_table.normal_(generator=torch.Generator().manual_seed(4))
    same = tmp_path / "same.safetensors"
    save_backbone_weights(source, same)
    target = tiny_shared(tiny_vit, seed=5)
    report = load_backbone_weights(target, same)
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.ignored) == [f"blocks.{i}.attn.relative_position_bias_table" for i in range(2)]
    shared_table = target.rel_pos_bias.relative_position_bias_table
    assert torch.equal(shared_table, source.blocks[0].attn.relative_position_bias_table)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(target(x), source(x), atol=1e-5)

    with torch.no_grad():
        source.blocks[1].attn.relative_position_bias_table.add_(1.0)
    different = tmp_path / "different.safetensors"
    save_backbone_weights(source, different)
    with pytest.raises(SonofmError) as error:
        load_backbone_weights(target, different)
    message = str(error.value)
    assert message.startswith(f"{different}: blocks.1.attn.relative_position_bias_table differs from blocks.0.")
    assert "build the model without shared_rel_pos_bias" in message and "\n" not in message


def test_shared_file_at_another_grid_is_resampled(tmp_path, tiny_vit):
    source = tiny_shared(tiny_vit, seed=6)
    path = tmp_path / "shared64.safetensors"
    save_backbone_weights(source, path)
    loaded = create_backbone(
        "usfm_vit_base_patch16", img_size=96, weights=path, shared_rel_pos_bias=True, **tiny_vit
    )
    assert loaded.load_report.resized == {SHARED_TABLE_KEY: "resampled from a 4x4 to a 6x6 patch grid"}
    assert loaded.load_report.ignored == {}
    table = loaded.rel_pos_bias.relative_position_bias_table.detach()
    assert table.shape == (11 * 11 + 3, 4)
    assert torch.equal(table[-3:], source.rel_pos_bias.relative_position_bias_table.detach()[-3:])
    assert loaded.rel_pos_bias.relative_position_index.shape == (37, 37)
