"""Loading SAM checkpoints: official-format parity at 1024, resampling at 256, and refusals."""

import pytest
import torch
from segment_anything import sam_model_registry

from sonofm.errors import SonofmError
from sonofm.sam import load_sam
from sonofm.sam.decoding import decode_masks


@pytest.mark.slow
def test_random_vit_b_checkpoint_loads_completely_and_matches_the_package_model(tmp_path):
    torch.manual_seed(0)
    reference = sam_model_registry["vit_b"]()
    for name, param in reference.named_parameters():  # SAM zero-initialises rel_pos: make every tensor count
        if "rel_pos" in name:
            param.data.normal_(0, 0.02)
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(reference.state_dict(), path)

    ours = load_sam(path, "vit_b", 1024)
    report = ours.load_report
    assert report.missing == [] and report.unexpected == [] and report.resized == {}
    assert len(report.loaded) == len(reference.state_dict())

    image = torch.rand(3, 1024, 1024) * 255
    point = torch.tensor([[[400.0, 300.0]]]), torch.tensor([[1]])
    with torch.inference_mode():
        expected = reference([{"image": image, "original_size": (1024, 1024), "point_coords": point[0],
                               "point_labels": point[1]}], multimask_output=False)[0]["low_res_logits"]
        embeddings = ours.image_encoder(ours.preprocess(image)[None])
        sparse, dense = ours.prompt_encoder(points=point, boxes=None, masks=None)
        logits, _ = decode_masks(ours.mask_decoder, embeddings, torch.tensor([0]), ours.prompt_encoder.get_dense_pe(),
                                 sparse, dense)
    assert logits.shape == expected.shape == (1, 1, 256, 256)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_reduced_input_size_resamples_position_tables(tiny_checkpoint):
    model = load_sam(tiny_checkpoint, "vit_tiny", 256)
    assert model.image_encoder.pos_embed.shape == (1, 16, 16, 64)
    assert model.image_encoder.blocks[1].attn.rel_pos_h.shape == (31, 32)  # global block: 2 * 16 - 1 rows
    assert model.image_encoder.blocks[0].attn.rel_pos_h.shape == (13, 32)  # windowed block keeps 2 * 7 - 1
    assert set(model.load_report.resized) == {
        "image_encoder.pos_embed", "image_encoder.blocks.1.attn.rel_pos_h", "image_encoder.blocks.1.attn.rel_pos_w"}
    with torch.inference_mode():
        assert model.image_encoder(torch.randn(1, 3, 256, 256)).shape == (1, 64, 16, 16)


def test_resampling_keeps_smooth_tables(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["image_encoder.pos_embed"] = torch.full((1, 64, 64, 64), 0.5)
    ramp = torch.linspace(-1, 1, 127)[:, None].expand(127, 32)
    state["image_encoder.blocks.1.attn.rel_pos_h"] = ramp.clone()
    path = tmp_path / "smooth.pth"
    torch.save(state, path)
    model = load_sam(path, "vit_tiny", 128)
    torch.testing.assert_close(model.image_encoder.pos_embed, torch.full((1, 8, 8, 64), 0.5))
    table = model.image_encoder.blocks[1].attn.rel_pos_h  # (15, 32): still a ramp from about -1 to 1
    assert table.shape == (15, 32)
    assert torch.all(table[1:, 0] > table[:-1, 0]) and table[7, 0].abs() < 1e-5


def test_wrong_sam_type_names_the_type_in_the_file(tiny_checkpoint):
    with pytest.raises(SonofmError, match="holds a SAM vit_tiny but sam_type is vit_b; pass --sam-type vit_tiny"):
        load_sam(tiny_checkpoint, "vit_b", 256)


def test_missing_and_unexpected_keys_are_errors(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    del state["mask_decoder.iou_token.weight"]
    state["extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(SonofmError, match=r"missing keys \['mask_decoder.iou_token.weight'\].*\['extra.weight'\]"):
        load_sam(broken, "vit_tiny", 256)


def test_mismatched_shape_is_an_error(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(SonofmError, match="mask_decoder.iou_token.weight has shape"):
        load_sam(broken, "vit_tiny", 256)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(SonofmError, match="not found"):
        load_sam(tmp_path / "nope.pth", "vit_b")
