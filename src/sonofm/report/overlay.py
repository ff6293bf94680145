"""Colour overlays of class-id masks on ultrasound images."""

from __future__ import annotations

import numpy as np

# Class 0 (background) is left uncoloured; classes 1.. cycle through these RGB colours.
PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
     (240, 50, 230)], dtype=np.float32,
)


def class_colours(num_classes: int) -> np.ndarray:
    """``float32 (K, 3)`` RGB colours; row 0 (background) is black."""
    colours = np.zeros((num_classes, 3), dtype=np.float32)
    for class_id in range(1, num_classes):
        colours[class_id] = PALETTE[(class_id - 1) % len(PALETTE)]
    return colours


def overlay_mask(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.45) -> np.ndarray:
    """Blend ``int (H, W)`` class ids over a ``uint8 (H, W, 3)`` image; background pixels stay unchanged.

    Ids outside ``0..num_classes-1`` (an ignore label) are left uncoloured too.
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    colours = class_colours(num_classes)
    coloured = (mask > 0) & (mask < num_classes)
    blended = image.astype(np.float32)
    ids = mask[coloured]
    blended[coloured] = (1 - alpha) * blended[coloured] + alpha * colours[ids]
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
