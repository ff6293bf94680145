"""Reconstruction losses of USFM's dual masked image modelling: pixel L1 on hidden pixels and amplitude-spectrum L1.

Both compute in float32 whatever the input dtype (FFTs do not take bf16) and return a float32 scalar.
"""

import torch
from torch import Tensor


def masked_l1(pred: Tensor, target: Tensor, pixel_mask: Tensor) -> Tensor:
    """Mean absolute error over the pixels where ``pixel_mask`` ``(B, 1, H, W)`` is 1 and over all channels.

    ``pred``, ``target``: ``(B, C, H, W)``. SimMIM's normalisation: ``sum |pred - target| * mask`` divided by
    ``C * sum(mask)``, so every hidden pixel counts the same whatever the batch's mask sizes; 0 for an empty mask.
    """
    mask = pixel_mask.float()
    error = (pred.float() - target.float()).abs() * mask
    return error.sum() / (mask.sum() * pred.shape[1]).clamp_min(1e-8)


def amplitude_spectrum(images: Tensor, log_amplitude: bool) -> Tensor:
    """``(B, C, H, W)`` -> ``|fft2|`` per channel ``(B, C, H, W)`` (orthonormal, so its energy is the image's);
    ``log1p`` of it when ``log_amplitude``."""
    amplitude = torch.fft.fft2(images.float(), norm="ortho").abs()
    return torch.log1p(amplitude) if log_amplitude else amplitude


def frequency_l1(pred: Tensor, target: Tensor, log_amplitude: bool = True) -> Tensor:
    """L1 between the amplitude spectra of ``pred`` and ``target`` ``(B, C, H, W)``, mean over every frequency and
    channel of the whole spectrum (not only the removed bands); phase is ignored.

    The orthonormal FFT keeps the scale independent of the image size; ``log_amplitude`` compresses the DC and
    low-frequency peaks so the weak high frequencies (texture, speckle) weigh in.
    """
    return (amplitude_spectrum(pred, log_amplitude) - amplitude_spectrum(target, log_amplitude)).abs().mean()
