"""Block masks, band-stop rings and fills of the dual masked image modelling."""

import pytest
import torch

from sonofm.methods.mim import (
    apply_band_stop,
    band_stop_mask,
    fill_masked,
    patch_mask_to_pixels,
    random_block_mask,
    ring_edges,
)
from sonofm.methods.mim.masking import frequency_radius

RINGS_224 = [(4, 6), (6, 9), (9, 13), (13, 19), (19, 28), (28, 42), (42, 58), (58, 74), (74, 90), (90, 106)]


def test_block_mask_hides_exactly_ceil_ratio_of_whole_blocks():
    generator = torch.Generator().manual_seed(0)
    mask = random_block_mask(8, 224, mask_patch=32, model_patch=16, ratio=0.6, generator=generator)
    assert mask.shape == (8, 196) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [30 * 4] * 8  # ceil(0.6 * 49) = 30 blocks of 2x2 patches
    groups = mask.view(8, 7, 2, 7, 2)
    assert torch.equal(groups.all(dim=(2, 4)), groups.any(dim=(2, 4)))  # each 2x2 group all hidden or all shown
    assert len({tuple(row.tolist()) for row in mask}) == 8  # drawn per image


def test_block_mask_count_is_not_pushed_up_by_float_error():
    # 0.7 * 100 is 70.00000000000001 in floating point; still 70 blocks (of one patch each here).
    mask = random_block_mask(2, 320, mask_patch=32, model_patch=32, ratio=0.7)
    assert mask.sum(dim=1).tolist() == [70, 70]
    assert random_block_mask(3, 64, ratio=0.6).sum(dim=1).tolist() == [12, 12, 12]  # ceil(2.4) = 3 of 4 blocks


def test_block_mask_is_reproducible_with_a_generator():
    first = random_block_mask(4, 64, generator=torch.Generator().manual_seed(3))
    second = random_block_mask(4, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"img_size": 100}, "img_size 100 must be a positive multiple of mask_patch 32"),
        ({"mask_patch": 24}, "mask_patch 24 must be a positive multiple of model_patch 16"),
        ({"ratio": 1.5}, r"mask ratio must be in \[0, 1\], got 1.5"),
    ],
)
def test_block_mask_asserts_its_geometry(kwargs, message):
    with pytest.raises(AssertionError, match=message):
        random_block_mask(1, **({"img_size": 64} | kwargs))


def test_patch_mask_to_pixels_repeats_each_patch():
    mask = torch.tensor([[True, False, False, True]])
    pixels = patch_mask_to_pixels(mask, (2, 2), patch=2)
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float32)
    assert pixels.shape == (1, 1, 4, 4) and torch.equal(pixels[0, 0], expected)


def test_fill_masked_uses_per_channel_image_mean_or_zero():
    images = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[-4.0, 0.0], [0.0, 0.0]]]])  # channel means 3 and -1
    pixel_mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert torch.equal(fill_masked(images, pixel_mask, "mean"),
                       torch.tensor([[[[3.0, 2.0], [3.0, 3.0]], [[-1.0, 0.0], [0.0, -1.0]]]]))
    assert torch.equal(fill_masked(images, pixel_mask, "zero"),
                       torch.tensor([[[[0.0, 2.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]]))
    with pytest.raises(ValueError, match="fill mode"):
        fill_masked(images, pixel_mask, "noise")


def test_ring_edges_reproduce_the_reference_list():
    assert ring_edges(224) == RINGS_224
    assert ring_edges(64) == RINGS_224[:5]  # the next ring (28, 42] passes 64 / 2
    assert ring_edges(224, centre_protect=7)[:2] == [(7, 9), (9, 13)]  # (4, 6] dropped, (6, 9] clipped
    assert ring_edges(16, base_width=1, centre_protect=2) == [(2, 3), (3, 4), (4, 6)]  # widths at least 1


def test_frequency_radius_is_distance_from_dc_in_fft_order():
    radius = frequency_radius(8)
    assert radius[0, 0] == 0 and radius[0, 3] == 3 and radius[0, 5] == 3 and radius[0, 4] == 4
    assert torch.isclose(radius[7, 1], torch.tensor(2**0.5))
    assert torch.equal(torch.fft.fftshift(radius)[4, 4 + 3], radius[0, 3])  # centred layout: distance from (4, 4)


def test_band_stop_mask_removes_whole_chosen_rings_only():
    stop = band_stop_mask(6, 224, RINGS_224, ratio=0.5, generator=torch.Generator().manual_seed(1))
    radius = frequency_radius(224)
    assert stop.shape == (6, 224, 224) and stop.dtype == torch.bool
    assert not stop[:, radius <= 4].any() and not stop[:, radius > 106].any()  # centre (with DC) and corners kept
    removed_sets = set()
    for image_stop in stop:
        removed = []
        for index, (inner, outer) in enumerate(RINGS_224):
            ring = image_stop[(radius > inner) & (radius <= outer)]
            assert ring.all() or not ring.any()
            if ring.all():
                removed.append(index)
        assert len(removed) == 5
        removed_sets.add(tuple(removed))
    assert len(removed_sets) > 1  # drawn per image


def test_band_stop_mask_is_symmetric_under_negated_frequency():
    stop = band_stop_mask(3, 32, ring_edges(32), ratio=0.5, generator=torch.Generator().manual_seed(0))
    negated = torch.roll(stop.flip(1, 2), shifts=(1, 1), dims=(1, 2))  # index k -> (-k) mod n
    assert torch.equal(stop, negated)


def test_apply_band_stop_zeroes_chosen_frequencies_and_keeps_the_rest():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    stop = band_stop_mask(2, 64, ring_edges(64), ratio=0.5, generator=generator)
    filtered = apply_band_stop(images, stop)
    before, after = torch.fft.fft2(images), torch.fft.fft2(filtered)
    removed = stop[:, None].expand_as(after)
    assert stop.float().mean() > 0.05
    assert after[removed].abs().max() < 1e-3  # |spectrum| of the input is ~64 per entry here
    assert torch.allclose(after[~removed], before[~removed], atol=1e-3)
    assert torch.allclose(filtered.mean(dim=(-2, -1)), images.mean(dim=(-2, -1)), atol=1e-5)  # DC kept


def test_band_stop_inverse_is_real_so_the_real_part_keeps_signs():
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 32, 32, generator=generator)
    stop = band_stop_mask(2, 32, ring_edges(32), ratio=1.0, generator=generator)
    inverse = torch.fft.ifft2(torch.fft.fft2(images).masked_fill(stop[:, None], 0))
    assert inverse.imag.abs().max() < 1e-5
    assert torch.equal(apply_band_stop(images, stop), inverse.real)
    constant = torch.full((1, 3, 32, 32), -1.5)  # all energy at DC: unchanged, negative sign kept
    assert torch.allclose(apply_band_stop(constant, stop[:1]), constant, atol=1e-6)


def test_apply_band_stop_keeps_bf16_dtype():
    images = torch.randn(1, 3, 32, 32).bfloat16()
    stop = band_stop_mask(1, 32, ring_edges(32))
    assert apply_band_stop(images, stop).dtype == torch.bfloat16
