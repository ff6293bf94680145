"""PSNR and SSIM against known values and torchmetrics; masked versions ignore pixels outside the mask."""

import math

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from sonofm.metrics.enhancement import enhancement_metrics, psnr, ssim, ssim_map


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    image = torch.rand(2, 3, 24, 24)
    assert torch.isinf(psnr(image, image)).all()
    torch.testing.assert_close(ssim(image, image), torch.ones(2, dtype=torch.float64))


def test_psnr_of_a_known_mse():
    target = torch.full((1, 3, 8, 8), 0.5)
    restored = target + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(restored, target).item() == pytest.approx(20.0)
    assert psnr(restored, target, data_range=2.0).item() == pytest.approx(20 + 20 * math.log10(2))


def test_psnr_and_ssim_match_torchmetrics():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 40, 40, generator=generator)
    restored = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    expected_psnr = torch.stack([peak_signal_noise_ratio(r[None], t[None], data_range=1.0)
                                 for r, t in zip(restored, target)])
    torch.testing.assert_close(psnr(restored, target).float(), expected_psnr, atol=1e-4, rtol=0)
    expected_ssim = structural_similarity_index_measure(restored, target, data_range=1.0, reduction="none")
    torch.testing.assert_close(ssim(restored, target).float(), expected_ssim, atol=1e-4, rtol=0)


def test_masked_metrics_ignore_pixels_outside_the_mask():
    target = torch.full((1, 3, 32, 32), 0.5)
    restored = target.clone()
    restored[..., :, 16:] = torch.rand(1, 3, 32, 16)  # wrong only on the right half
    left = torch.zeros(1, 32, 32, dtype=torch.bool)
    left[..., :16] = True
    assert torch.isinf(psnr(restored, target, left)).all()
    restored[..., :, :16] += 0.1  # left half: MSE 0.01 -> 20 dB, whatever the right half holds
    assert psnr(restored, target, left).item() == pytest.approx(20.0)
    values = ssim_map(restored, target)
    assert ssim(restored, target, left).item() == pytest.approx(values[0, :, :16].mean().item())
    assert ssim(restored, target, torch.ones_like(left)).item() == pytest.approx(ssim(restored, target).item())


def test_enhancement_metrics_keys():
    image = torch.rand(2, 3, 16, 16)
    values = enhancement_metrics(image * 0.9, image, torch.ones(2, 16, 16, dtype=torch.bool))
    assert set(values) == {"psnr", "ssim", "psnr_fan", "ssim_fan"}
    torch.testing.assert_close(values["psnr"], values["psnr_fan"])
