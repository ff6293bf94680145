"""Mask overlays: background and ignored pixels untouched, classes blended with their palette colour."""

import numpy as np
import pytest

from sonofm.report.overlay import PALETTE, class_colours, overlay_mask


def test_overlay_blends_only_class_pixels():
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    mask = np.zeros((4, 4), dtype=np.int64)
    mask[0, 0], mask[0, 1], mask[0, 2] = 1, 2, 255
    out = overlay_mask(image, mask, num_classes=3, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[0, 0], np.floor(0.5 * 100 + 0.5 * PALETTE[0] + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(out[0, 1], np.floor(0.5 * 100 + 0.5 * PALETTE[1] + 0.5).astype(np.uint8))
    assert (out[0, 2] == 100).all() and (out[1:] == 100).all()


def test_colours_cycle_and_background_is_black():
    colours = class_colours(len(PALETTE) + 2)
    assert (colours[0] == 0).all()
    np.testing.assert_array_equal(colours[len(PALETTE) + 1], PALETTE[0])


def test_size_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in size"):
        overlay_mask(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int64), 2)
