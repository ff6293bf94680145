"""MaskedImageModel on a tiny UsfmViT at 64 px (4x4 patch grid, 2x2 blocks of 32 px)."""

import dataclasses
import math

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.methods.mim import MaskedImageModel, MimConfig, PixelShuffleDecoder
from sonofm.models import create_backbone
from sonofm.engine.optim import layer_decay_param_groups


def tiny_encoder(**overrides):
    torch.manual_seed(0)
    return create_backbone("usfm_vit_tiny_patch16", img_size=64, depth=2, **overrides)


def smooth_images(batch: int = 2) -> torch.Tensor:
    """Normalised-looking images ``(B, 3, 64, 64)``: a few low-frequency waves per channel, values in about [-2, 2]."""
    coords = torch.linspace(0, 2 * math.pi, 64)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    images = [
        torch.stack([torch.sin((b + 1) * x) + torch.cos((c + 1) * y) for c in range(3)]) for b in range(batch)
    ]
    return torch.stack(images)


def test_decoder_maps_patch_features_to_pixels():
    decoder = PixelShuffleDecoder(embed_dim=8, patch_size=4)
    assert decoder(torch.randn(2, 8, 3, 5)).shape == (2, 3, 12, 20)
    assert decoder.proj.out_channels == 4 * 4 * 3


def test_forward_shapes_and_losses():
    model = MaskedImageModel(tiny_encoder(), MimConfig(fill="token"))  # the corrupted view is band-stopped only
    images = smooth_images()
    outputs = model(images, generator=torch.Generator().manual_seed(0))
    assert set(outputs) == {"loss", "loss_spatial", "loss_frequency", "reconstruction", "corrupted", "pixel_mask"}
    assert outputs["reconstruction"].shape == outputs["corrupted"].shape == (2, 3, 64, 64)
    assert outputs["pixel_mask"].shape == (2, 1, 64, 64)
    assert outputs["pixel_mask"].mean(dim=(1, 2, 3)).tolist() == [0.75, 0.75]  # ceil(0.6 * 4) = 3 of 4 blocks
    assert torch.isfinite(outputs["loss"])
    assert torch.isclose(outputs["loss"], outputs["loss_spatial"] + outputs["loss_frequency"])
    assert not torch.allclose(outputs["corrupted"], images, atol=1e-3)  # band-stopped
    assert torch.allclose(outputs["corrupted"].mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=1e-5)


def test_same_generator_seed_same_outputs():
    model = MaskedImageModel(tiny_encoder()).eval()
    first = model(smooth_images(), generator=torch.Generator().manual_seed(5))
    second = model(smooth_images(), generator=torch.Generator().manual_seed(5))
    assert torch.equal(first["pixel_mask"], second["pixel_mask"]) and torch.equal(first["loss"], second["loss"])


def test_the_default_fill_is_the_image_mean_as_in_the_paper():
    assert MimConfig().fill == "mean"
    assert not MaskedImageModel(tiny_encoder()).encoder.mask_token.requires_grad


def test_token_fill_trains_the_mask_token_and_leaves_pixels_alone():
    model = MaskedImageModel(tiny_encoder(), MimConfig(frequency=False, fill="token"))
    images = smooth_images()
    outputs = model(images)
    assert "loss_frequency" not in outputs
    assert torch.equal(outputs["corrupted"], images)
    outputs["loss"].backward()
    assert model.encoder.mask_token.grad is not None and model.encoder.mask_token.grad.abs().sum() > 0


def test_mean_fill_paints_hidden_blocks_with_the_channel_mean():
    model = MaskedImageModel(tiny_encoder(), MimConfig(frequency=False, fill="mean"))
    images = smooth_images()
    outputs = model(images)
    hidden = outputs["pixel_mask"].bool().expand_as(images)
    means = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    assert torch.equal(outputs["corrupted"][hidden], means[hidden])
    assert torch.equal(outputs["corrupted"][~hidden], images[~hidden])
    outputs["loss"].backward()
    assert model.encoder.mask_token.grad is None


def test_without_spatial_masking_the_pixel_loss_covers_every_pixel():
    model = MaskedImageModel(tiny_encoder(), MimConfig(spatial=False, frequency_weight=0.5))
    images = smooth_images()
    outputs = model(images)
    assert outputs["pixel_mask"].sum() == 0
    assert torch.isclose(outputs["loss_spatial"], (outputs["reconstruction"] - images).abs().mean())
    assert torch.isclose(outputs["loss"], outputs["loss_spatial"] + 0.5 * outputs["loss_frequency"])


def test_loss_falls_when_overfitting_two_images():
    model = MaskedImageModel(tiny_encoder(drop_path_rate=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = smooth_images()
    history = []
    for _ in range(30):
        outputs = model(images, generator=torch.Generator().manual_seed(0))  # the same masks every step
        optimizer.zero_grad()
        outputs["loss"].backward()
        optimizer.step()
        history.append((outputs["loss"].item(), outputs["loss_frequency"].item()))
    (first_loss, first_frequency), (last_loss, last_frequency) = history[0], history[-1]
    # Hidden tokens carry no absolute position (USFM has only relative position bias), so L_spa falls slowly here.
    assert last_loss < 0.75 * first_loss and last_frequency < 0.25 * first_frequency


def test_layer_ids_put_the_decoder_on_top_with_the_final_norm():
    model = MaskedImageModel(tiny_encoder(), MimConfig(fill="token"))
    names = [name for name, _ in model.named_parameters()]
    assert all(name.startswith(("encoder.", "decoder.")) for name in names)
    assert model.num_layer_ids == 2 + 2  # stem, 2 blocks, then final norm and decoder (BEiT's top id)
    ids = [model.layer_id(name) for name in ("encoder.mask_token", "encoder.blocks.1.attn.qkv.weight",
                                             "encoder.norm.weight", "decoder.proj.weight")]
    assert ids == [0, 2, 3, 3]
    groups = layer_decay_param_groups(model, weight_decay=0.05, layer_decay=0.5)
    assert sum(len(group["params"]) for group in groups) == len(names)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spatial": False, "frequency": False}, "at least one of spatial and frequency masking must be on"),
        ({"mask_ratio": 1.5}, r"mask_ratio must be in \(0, 1\), got 1.5"),
        ({"fill": "noise"}, "fill must be one of token, mean, zero, got 'noise'"),
        ({"freq_ratio": 0.0}, r"freq_ratio must be in \(0, 1\], got 0.0"),
        ({"spatial_weight": -1.0}, "spatial_weight must be >= 0, got -1.0"),
        ({"spatial_weight": 0.0, "frequency": False}, "the loss is zero"),
        ({"mask_patch": 24}, "mask_patch must be a positive multiple of the encoder's patch size 16, got 24"),
        ({"mask_patch": 48}, "--img-size 64 is not a multiple of mask_patch 48"),
        ({"freq_ratio": 0.1}, "no band-stop ring to remove at 64 px with freq_ratio 0.1"),
        ({"ring_increase_factor": 0.0}, "ring_increase_factor must be > 0, got 0.0"),
    ],
)
def test_config_validation(changes, message):
    config = dataclasses.replace(MimConfig(), **changes)
    with pytest.raises(SonofmError, match=message):
        config.validate(img_size=64, patch_size=16)


def test_the_model_asserts_the_masking_geometry_it_was_given():
    with pytest.raises(AssertionError, match="mask_patch 48 must divide img_size 64 into whole patches"):
        MaskedImageModel(tiny_encoder(), MimConfig(mask_patch=48))


def test_token_fill_needs_an_encoder_with_a_mask_token():
    encoder = create_backbone("timm_vit_tiny_patch16", img_size=64, depth=2)
    with pytest.raises(SonofmError, match="fill='token' needs an encoder with a mask token"):
        MaskedImageModel(encoder, MimConfig(fill="token"))
    assert MaskedImageModel(encoder, MimConfig(fill="mean")).num_layer_ids == 4
