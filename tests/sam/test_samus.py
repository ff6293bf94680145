"""SAMUS's encoder (the A-SAM of ACLUS): official checkpoints load with every new tensor named, SAMUS's freezing rule,
the 8-pixel token stride and 128x128 low-resolution masks at 256 px, and blocks that reduce to SAM's own."""

import pytest
import torch
from segment_anything import sam_model_registry
from segment_anything.modeling.image_encoder import Block

from sonofm.errors import SonofmError
from sonofm.runs.model_file import save_tensors
from sonofm.sam import AdaptedSam, build_adapted_sam, build_sam, load_adapted_sam
from sonofm.sam.decoding import decode_masks
from sonofm.sam.prompts import prompts_from_masks
from sonofm.sam.samus import SAMUS_PARTS, SamusBlock, samus_part


@pytest.mark.slow
def test_official_vit_b_checkpoint_loads_into_samus_and_trains_samus_parameter_set(tmp_path):
    torch.manual_seed(0)
    official = sam_model_registry["vit_b"]().state_dict()  # the official layout, random weights
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(official, path)

    model = build_adapted_sam(path, "vit_b", 256, ["background", "head"], adapter="samus")
    report = model.sam.load_report
    assert report.missing == [] and report.unexpected == []
    assert set(report.loaded) == set(official)  # every official tensor is used ...
    state = model.sam.state_dict()
    assert set(report.new) == set(state) - set(official)  # ... and exactly the SAMUS parts are new
    assert {samus_part(key) for key in report.new} == set(SAMUS_PARTS)
    assert set(report.resized) == {f"image_encoder.blocks.{index}.attn.rel_pos_{axis}"
                                   for index in (2, 5, 8, 11) for axis in "hw"}  # 127 -> 63 rows
    assert state["image_encoder.blocks.2.attn.rel_pos_h"].shape == (63, 64)
    torch.testing.assert_close(state["image_encoder.pos_embed"], official["image_encoder.pos_embed"])  # kept 64x64
    torch.testing.assert_close(state["image_encoder.patch_embed.proj.weight"],
                               official["image_encoder.patch_embed.proj.weight"])

    model.set_trainable("adapt")
    trained = {name.removeprefix("sam.") for name, param in model.named_parameters() if param.requires_grad}
    global_tables = {f"image_encoder.blocks.{index}.attn.rel_pos_{axis}" for index in (2, 5, 8, 11) for axis in "hw"}
    assert trained == set(report.new) | global_tables  # SAMUS's rule: its parts and the global blocks' tables
    assert not any(name.startswith(("mask_decoder.", "prompt_encoder.")) for name in trained)  # decoder frozen
    count = sum(param.numel() for param in model.parameters() if param.requires_grad)
    assert 39.6e6 < count < 39.7e6  # the ACLUS analysis counts about 39.7 M from the code


def test_samus_tokens_at_stride_8_and_low_res_masks_at_half_the_input(tiny_checkpoint):
    model = build_adapted_sam(tiny_checkpoint, "vit_tiny", 256, ["background", "a"], adapter="samus").eval()
    masks = torch.zeros(2, 256, 256, dtype=torch.long)
    masks[:, 60:120, 80:200] = 1
    prompts = prompts_from_masks(masks, 2, "point")
    with torch.inference_mode():
        embeddings = model.embed(torch.randn(2, 3, 256, 256))
        assert embeddings.shape == (2, 64, 32, 32)  # 32x32 tokens, as SAMUS at 256 px
        sparse, dense = prompts.embed(model.sam.prompt_encoder)
        low_res, _ = decode_masks(model.sam.mask_decoder, embeddings, prompts.image_index,
                                  model.sam.prompt_encoder.get_dense_pe(), sparse, dense)
        assert low_res.shape == (2, 1, 128, 128)
        assert model.prompted_logits(embeddings, prompts).shape == (2, 256, 256)


def test_global_samus_block_with_silent_adapters_is_sams_block():
    torch.manual_seed(0)
    args = {"mlp_ratio": 4, "qkv_bias": True, "use_rel_pos": True, "window_size": 0, "input_size": (8, 8)}
    ours = SamusBlock(64, 4, **args)
    torch.nn.init.zeros_(ours.branch_attention.proj.weight)
    torch.nn.init.zeros_(ours.branch_attention.proj.bias)
    torch.nn.init.zeros_(ours.mlp_adapter.up.weight)
    torch.nn.init.zeros_(ours.mlp_adapter.up.bias)
    sams = Block(64, 4, **args)
    sams.load_state_dict(ours.state_dict(), strict=False)
    for name, param in sams.named_parameters():
        if "rel_pos" in name:
            param.data.normal_(0, 0.1)
            ours.get_parameter(name).data.copy_(param.data)
    tokens, features = torch.randn(2, 8, 8, 64), torch.randn(2, 8, 8, 64)
    with torch.no_grad():
        out, refined = ours(tokens, features)
        torch.testing.assert_close(out, sams(tokens))
    assert refined.shape == features.shape and not torch.equal(refined, features)  # the CNN branch is refined


def test_windowed_samus_block_is_sams_block_and_passes_features_through():
    torch.manual_seed(0)
    args = {"mlp_ratio": 4, "qkv_bias": True, "use_rel_pos": True, "window_size": 3, "input_size": (8, 8)}
    ours, sams = SamusBlock(64, 4, **args), Block(64, 4, **args)
    sams.load_state_dict(ours.state_dict())
    tokens, features = torch.randn(1, 8, 8, 64), torch.randn(1, 8, 8, 64)
    with torch.no_grad():
        out, passed = ours(tokens, features)
        torch.testing.assert_close(out, sams(tokens))
    assert passed is features


def test_samus_saves_only_what_differs_and_reloads(tiny_checkpoint, tmp_path):
    model = build_adapted_sam(tiny_checkpoint, "vit_tiny", 128, ["background", "a"], adapter="samus")
    saved = model.adapted_state_dict()
    assert all(samus_part(name) or "rel_pos" in name or name.startswith("sam.mask_decoder.") for name in saved)
    with torch.no_grad():
        model.sam.image_encoder.cnn_branch.stem[0].weight.add_(1.0)
    path = tmp_path / "model.safetensors"
    save_tensors(model.adapted_state_dict(), path,
                 {**model.metadata(), "sam_checkpoint": str(tiny_checkpoint), "sam_type": "vit_tiny"})
    reloaded = load_adapted_sam(path)
    assert reloaded.adapter == "samus"
    images = torch.randn(1, 3, 128, 128)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded.embed(images), model.eval().embed(images))


@pytest.mark.parametrize("size", [96, 1024, 200])
def test_samus_refuses_sizes_its_position_reduction_cannot_reach(size):
    with pytest.raises(SonofmError, match="SAMUS adapter takes --img-size 64, 128, 256 or 512"):
        build_sam("vit_tiny", size, samus=True)


def test_adapter_must_match_the_encoder():
    with pytest.raises(SonofmError, match="does not match"):
        AdaptedSam(build_sam("vit_tiny", 64), ["background", "a"], adapter="samus")
