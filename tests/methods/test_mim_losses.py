"""Pixel and spectrum losses of the dual masked image modelling, on tensors small enough to check by hand."""

import math

import torch

from sonofm.methods.mim import frequency_l1, masked_l1


def test_masked_l1_averages_over_hidden_pixels_and_channels():
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]])  # (1, 2, 2, 2)
    pixel_mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # hidden pixels (0, 0) and (1, 1): |1| + |4| + |5| + |8| = 18 over 2 pixels x 2 channels
    assert masked_l1(torch.zeros_like(target), target, pixel_mask).item() == 4.5
    assert masked_l1(torch.zeros_like(target), target, torch.zeros_like(pixel_mask)).item() == 0.0


def test_masked_l1_computes_in_float32():
    pred = torch.zeros(1, 3, 4, 4, dtype=torch.bfloat16)
    target = torch.full((1, 3, 4, 4), 0.5, dtype=torch.bfloat16)
    loss = masked_l1(pred, target, torch.ones(1, 1, 4, 4))
    assert loss.dtype == torch.float32 and loss.item() == 0.5


def test_frequency_l1_of_a_constant_image_is_its_dc_amplitude_over_the_spectrum_size():
    target = torch.full((1, 1, 4, 4), 2.0)  # orthonormal DFT: DC = 2 * 16 / 4 = 8, all else 0
    pred = torch.zeros_like(target)
    assert math.isclose(frequency_l1(pred, target, log_amplitude=False).item(), 8 / 16, rel_tol=1e-6)
    assert math.isclose(frequency_l1(pred, target).item(), math.log(9) / 16, rel_tol=1e-6)


def test_frequency_l1_ignores_phase_so_a_circular_shift_costs_nothing():
    image = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(image, shifts=(3, 2), dims=(-2, -1))
    assert frequency_l1(shifted, image).item() < 1e-5
    assert frequency_l1(torch.zeros_like(image), image).item() > 0.1


def test_frequency_l1_takes_bf16_and_has_finite_gradients_at_zero():
    pred = torch.zeros(1, 3, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    loss = frequency_l1(pred, torch.ones(1, 3, 8, 8, dtype=torch.bfloat16))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(pred.grad.float()).all()
