"""Transforms: shapes, normalisation, depth direction kept, image and mask moved together."""

import numpy as np
import pytest
import torch

from sonofm.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassificationTransform,
    SegmentationTransform,
    random_crop_box,
)


def test_eval_transform_resizes_and_normalises():
    image = np.full((30, 50, 3), 128, dtype=np.uint8)
    out = ClassificationTransform(16, train=False)(image)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5, rtol=0)


def test_train_transform_keeps_depth_direction():
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[:20] = 200  # bright near the probe (top), dark in depth
    transform = ClassificationTransform(24, train=True)
    torch.manual_seed(0)
    for _ in range(20):
        out = transform(image)
        assert out.shape == (3, 24, 24)
        assert out[:, :8].mean() > out[:, -8:].mean() + 1.0


def test_crop_box_covers_70_to_100_percent():
    torch.manual_seed(0)
    for _ in range(50):
        top, left, height, width = random_crop_box(60, 80)
        assert 0 <= top <= 60 - height and 0 <= left <= 80 - width
        assert 0.69 <= height * width / (60 * 80) <= 1.0


@pytest.mark.parametrize("train", [False, True])
def test_segmentation_transform_moves_image_and_mask_together(train):
    rng = np.random.default_rng(0)
    ids = np.zeros((48, 64), dtype=np.int64)
    ids[5:20, 4:30] = 1
    ids[25:40, 40:60] = 2
    image = np.repeat((ids * 100 + 20).astype(np.uint8)[:, :, None], 3, axis=2)
    transform = SegmentationTransform(32, train=train)
    torch.manual_seed(int(rng.integers(1000)))
    for _ in range(10):
        out_image, out_mask = transform(image, ids)
        assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32) and out_mask.dtype == torch.int64
        assert set(out_mask.unique().tolist()) <= {0, 1, 2}
        gray = (out_image[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255  # levels 20/120/220, moved by the jitter
        from_image = (gray > 70).long() + (gray > 170).long()
        assert (from_image == out_mask).float().mean() > 0.95
