"""UsfmViT against a hand-written reference forward, and its token, mask, intermediate and layer-id interface."""

import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor

from sonofm.errors import SonofmError
from sonofm.models import create_backbone


def explicit_relative_index(height: int, width: int) -> Tensor:
    """BEiT relative position index written out pair by pair; row = query token, column = key token, CLS first."""
    patch_rows = (2 * height - 1) * (2 * width - 1)
    index = torch.empty(height * width + 1, height * width + 1, dtype=torch.long)
    for query in range(height * width):
        query_y, query_x = divmod(query, width)
        for key in range(height * width):
            key_y, key_x = divmod(key, width)
            index[query + 1, key + 1] = (query_y - key_y + height - 1) * (2 * width - 1) + (query_x - key_x + width - 1)
    index[0, :] = patch_rows  # cls -> token
    index[:, 0] = patch_rows + 1  # token -> cls
    index[0, 0] = patch_rows + 2  # cls -> cls
    return index


def reference_tokens(state: dict[str, Tensor], x: Tensor, depth: int, heads: int, grid: int) -> Tensor:
    """The USFM encoder's last-block tokens computed with explicit matrix products (no timm)."""
    batch = x.shape[0]
    patches = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    tokens = torch.cat((state["cls_token"].expand(batch, -1, -1), patches.flatten(2).transpose(1, 2)), dim=1)
    count, dim = tokens.shape[1:]
    head_dim = dim // heads
    index = explicit_relative_index(grid, grid)
    for block in range(depth):
        p = f"blocks.{block}."
        h = F.layer_norm(tokens, (dim,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-6)
        qkv_bias = torch.cat((state[p + "attn.q_bias"], torch.zeros(dim, dtype=x.dtype), state[p + "attn.v_bias"]))
        qkv = h @ state[p + "attn.qkv.weight"].T + qkv_bias
        q, k, v = qkv.reshape(batch, count, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-2, -1) / math.sqrt(head_dim)
        logits = logits + state[p + "attn.relative_position_bias_table"][index].permute(2, 0, 1)
        attended = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, count, dim)
        attended = attended @ state[p + "attn.proj.weight"].T + state[p + "attn.proj.bias"]
        tokens = tokens + state[p + "gamma_1"] * attended
        h = F.layer_norm(tokens, (dim,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-6)
        h = F.gelu(h @ state[p + "mlp.fc1.weight"].T + state[p + "mlp.fc1.bias"])
        tokens = tokens + state[p + "gamma_2"] * (h @ state[p + "mlp.fc2.weight"].T + state[p + "mlp.fc2.bias"])
    return tokens


def test_timm_relative_index_is_the_beit_convention(tiny_usfm):
    model = tiny_usfm()
    for block in model.blocks:
        assert torch.equal(block.attn.relative_position_index, explicit_relative_index(4, 4))
        assert block.attn.relative_position_bias_table.shape == (7 * 7 + 3, 4)


def test_tokens_match_hand_written_reference(tiny_usfm):
    model = tiny_usfm().double()
    state = {key: value.detach() for key, value in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        tokens = model.forward_tokens(x)
        features = model.forward_features(x)
        called = model(x)
    expected = reference_tokens(state, x, depth=2, heads=4, grid=4)
    assert tokens.shape == (2, 17, 64)
    assert torch.allclose(tokens, expected, rtol=0, atol=1e-10)
    normed = F.layer_norm(expected, (64,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    assert torch.allclose(features, normed, rtol=0, atol=1e-10)
    assert torch.equal(called, tokens)


def test_attention_uses_fused_sdpa_and_has_no_abs_position(tiny_usfm):
    model = tiny_usfm()
    assert all(block.attn.fused_attn for block in model.blocks)
    assert model.pos_embed is None and model.rel_pos_bias is None
    assert "pos_embed" not in model.state_dict()


def test_architecture_defaults():
    model = create_backbone("usfm_vit_base_patch16", img_size=64, depth=4, embed_dim=64, num_heads=4)
    assert [block.drop_path1.drop_prob for block in model.blocks[1:]] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])
    assert not isinstance(model.blocks[0].drop_path1, DropPath)  # rate 0 -> identity
    assert torch.all(model.blocks[0].gamma_1 == 0.1) and torch.all(model.blocks[3].gamma_2 == 0.1)
    assert model.norm.eps == 1e-6 and model.blocks[0].norm1.eps == 1e-6
    assert model.blocks[0].attn.qkv.bias is None and torch.all(model.blocks[0].attn.k_bias == 0)
    assert model.mask_token.shape == (1, 1, 64)
    assert (model.embed_dim, model.patch_size, model.grid_size, model.num_prefix_tokens, model.depth) == (
        64, 16, (4, 4), 1, 4,
    )


def test_mask_token_replaces_exactly_the_masked_patches(tiny_usfm):
    model = tiny_usfm()
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 5, 15]] = True
    mask[1, 3:11] = True
    block_inputs = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: block_inputs.append(args[0]))
    with torch.no_grad():
        masked = model.forward_tokens(x, mask)
        unmasked = model.forward_tokens(x)
        all_false = model.forward_tokens(x, torch.zeros(2, 16, dtype=torch.bool))
        patches = model.patch_embed(x)
    embedded = block_inputs[0][:, 1:]
    assert torch.equal(embedded[mask], model.mask_token[0, 0].expand(11, -1))
    assert torch.equal(embedded[~mask], patches[~mask])
    assert torch.equal(block_inputs[0][:, 0], model.cls_token[0].expand(2, -1))
    assert torch.equal(all_false, unmasked)
    assert not torch.allclose(masked, unmasked)


def test_mask_of_wrong_shape_is_a_bug(tiny_usfm):
    with pytest.raises(ValueError, match="mask must be bool"):
        tiny_usfm().forward_tokens(torch.randn(1, 3, 64, 64), torch.zeros(1, 15, dtype=torch.bool))


def test_forward_intermediates_are_block_outputs_as_maps(tiny_usfm):
    model = tiny_usfm()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        last, first = model.forward_intermediates(x, [-1, 0])
        tokens = model.forward_tokens(x)
    assert last.shape == first.shape == (2, 64, 4, 4)
    assert torch.equal(last, tokens[:, 1:].transpose(1, 2).reshape(2, 64, 4, 4))
    assert torch.equal(last[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])  # row-major patch order
    assert not torch.allclose(first, last)
    with pytest.raises(SonofmError, match="block index 2 is out of range for a 2-block backbone"):
        model.forward_intermediates(x, [2])


def test_gradient_checkpointing_keeps_outputs_and_gradients(tiny_usfm):
    model = tiny_usfm()
    x = torch.randn(1, 3, 64, 64)
    plain = model.forward_tokens(x)
    plain.square().sum().backward()
    plain_grad = model.blocks[0].attn.qkv.weight.grad.clone()
    model.zero_grad()
    model.set_grad_checkpointing(True)
    checkpointed = model.forward_tokens(x)
    checkpointed.square().sum().backward()
    assert torch.allclose(checkpointed, plain, atol=1e-6)
    assert torch.allclose(model.blocks[0].attn.qkv.weight.grad, plain_grad, atol=1e-5)


def test_wrong_input_size_names_the_flag(tiny_usfm):
    with pytest.raises(SonofmError, match=r"^input 96x96 but the model was built for 64x64; pass --img-size 96$"):
        tiny_usfm().forward_tokens(torch.randn(1, 3, 96, 96))
    with pytest.raises(SonofmError, match=r"expected an image batch of shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"):
        tiny_usfm().forward_tokens(torch.randn(1, 1, 64, 64))


def test_img_size_must_be_a_patch_multiple():
    with pytest.raises(SonofmError, match="^--img-size must be a multiple of 16, the patch size of "
                                          "usfm_vit_tiny_patch16, got 250$"):
        create_backbone("usfm_vit_tiny_patch16", img_size=250, depth=1)


def test_layer_ids_for_layer_decay(tiny_usfm):
    model = tiny_usfm()
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert model.num_layer_ids == 4
    assert ids["cls_token"] == ids["mask_token"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == ids["blocks.0.gamma_1"] == 1
    assert ids["blocks.1.attn.relative_position_bias_table"] == 2
    assert ids["norm.weight"] == ids["norm.bias"] == 3
    assert sorted(set(ids.values())) == [0, 1, 2, 3]


def test_no_weight_decay_covers_tokens_and_tables(tiny_usfm):
    assert tiny_usfm().no_weight_decay() >= {
        "cls_token",
        "mask_token",
        "blocks.0.attn.relative_position_bias_table",
        "blocks.1.attn.relative_position_bias_table",
    }
