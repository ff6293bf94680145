"""Seeded degradations: determinism, shapes and ranges, how much each one changes an image."""

import pytest
import torch

from sonofm.data.degradations import (
    DEGRADATIONS,
    DegradationConfig,
    degrade,
    downsample,
    fixed_generator,
    gaussian_blur,
    speckle,
)
from sonofm.errors import SonofmError
from sonofm.metrics.enhancement import psnr


def smooth_image(batch: int = 2, size: int = 32) -> torch.Tensor:
    """A smooth gradient image (B, 3, size, size) in [0.2, 0.8]."""
    ramp = torch.linspace(0.2, 0.8, size)
    image = (ramp[None, :] + ramp[:, None]) / 2
    return image.expand(batch, 3, size, size).clone()


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_same_seed_same_result_and_shape_range_kept(kind):
    image = torch.rand(2, 3, 32, 32)
    config = DegradationConfig(kind=kind, scale=4)
    first = degrade(image, config, torch.Generator().manual_seed(5))
    again = degrade(image, config, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert first.shape == image.shape and first.dtype == image.dtype
    assert first.min() >= 0 and first.max() <= 1
    single = degrade(image[0], config, torch.Generator().manual_seed(5))
    assert single.shape == (3, 32, 32)


def test_speckle_differs_by_seed_lowers_psnr_more_when_stronger_and_keeps_gray():
    image = smooth_image()
    weak = speckle(image, 0.2, torch.Generator().manual_seed(0))
    strong = speckle(image, 0.8, torch.Generator().manual_seed(0))
    other = speckle(image, 0.8, torch.Generator().manual_seed(1))
    assert not torch.equal(strong, other)
    assert (psnr(strong, image) < psnr(weak, image)).all()
    assert (psnr(weak, image) < 40).all()
    assert torch.equal(strong[:, 0], strong[:, 2])  # one noise field for the three channels


def test_blur_keeps_a_constant_image_and_smooths_an_edge():
    constant = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, 1.5), constant)
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1
    blurred = gaussian_blur(edge, 1.0)
    assert 0 < blurred[0, 0, 0, 7] < 0.5 < blurred[0, 0, 0, 8] < 1


@pytest.mark.parametrize("scale", [2, 4])
def test_downsample_keeps_size_and_smooth_content_and_loses_pixel_detail(scale):
    smooth = smooth_image(1)
    restored = downsample(smooth, scale)
    assert restored.shape == smooth.shape
    assert psnr(restored, smooth).item() > 35
    checker = (torch.arange(32)[None, :] + torch.arange(32)[:, None]) % 2
    checker = checker.float().expand(1, 3, 32, 32)
    torch.testing.assert_close(downsample(checker, scale), torch.full_like(checker, 0.5), atol=1e-5, rtol=0)


def test_fixed_generator_depends_on_index_and_seed():
    image = smooth_image(1)
    config = DegradationConfig("speckle")
    a = degrade(image, config, fixed_generator(3))
    assert torch.equal(a, degrade(image, config, fixed_generator(3)))
    assert not torch.equal(a, degrade(image, config, fixed_generator(4)))
    assert not torch.equal(a, degrade(image, config, fixed_generator(3, seed=1)))


@pytest.mark.parametrize("kwargs, words", [({"kind": "noise"}, "--degradation must be one of"),
                                           ({"scale": 3}, "--scale must be 2 or 4")])
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(SonofmError, match=words):
        DegradationConfig(**kwargs).validate()
