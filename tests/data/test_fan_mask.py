"""Fan (acquisition-region) detection on phantom images with known sectors, burned-in text and cine loops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sonofm.data.fan_mask import MIN_FAN_FRACTION, detect_fan_mask, detect_fan_mask_sequence
from sonofm.data.phantom import draw_subject, perturb_subject, render_subject, sector_mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _phantom(seed: int, size: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 (H, W, 3) image, bool (H, W) true sector)``."""
    rng = np.random.default_rng(seed)
    subject = draw_subject(rng, "cyst")
    image, _ = render_subject(subject, rng, size=size)
    gray = image if image.ndim == 2 else image[..., 0]
    return np.repeat(gray[..., None], 3, axis=2).astype(np.uint8), sector_mask(subject.fan, size)


def _burn_annotations(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write white text in a corner and a yellow marker; return the image, where the text is and where the marker is."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), "G54 DR60", fill=(255, 255, 255))
    draw.rectangle((150, 170, 160, 180), fill=(255, 220, 0))
    annotated = np.asarray(canvas).copy()
    text = np.zeros(image.shape[:2], dtype=bool)
    text[2:14, 2:60] = True
    marker = np.zeros(image.shape[:2], dtype=bool)
    marker[170:181, 150:161] = True
    return annotated, text, marker


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phantom_sector_is_found(seed: int) -> None:
    image, truth = _phantom(seed)
    found = detect_fan_mask(image)
    assert found.dtype == bool and found.shape == truth.shape
    assert _iou(found, truth) > 0.97


def test_burned_in_text_and_colour_markers_are_outside_the_fan() -> None:
    image, truth = _phantom(3)  # the sector's deep edge runs through the marker's corner
    annotated, text, marker = _burn_annotations(image)
    assert 0 < (marker & truth).sum() < marker.sum() // 10
    found = detect_fan_mask(annotated)
    assert _iou(found, truth) > 0.97
    assert not (found & text & ~truth).any()
    assert not (found & marker & ~truth).any()  # no marker pixel outside the sector is taken as fan


def test_grayscale_input_and_dark_cyst_inside_the_fan() -> None:
    image, truth = _phantom(4)
    gray = image[..., 0].copy()
    ys, xs = np.nonzero(truth)
    cy, cx = int(ys.mean()), int(xs.mean())
    gray[cy - 10 : cy + 10, cx - 10 : cx + 10] = 0  # an anechoic region well inside the sector
    found = detect_fan_mask(gray)
    assert found[cy - 10 : cy + 10, cx - 10 : cx + 10].all()


def test_image_without_a_fan_keeps_everything() -> None:
    rng = np.random.default_rng(0)
    cropped = np.repeat(rng.integers(30, 255, size=(64, 80, 1), dtype=np.uint8), 3, axis=2)
    assert detect_fan_mask(cropped).all()
    black = np.zeros((64, 64), dtype=np.uint8)
    assert detect_fan_mask(black).all()  # nothing plausible: never drop the whole image
    assert MIN_FAN_FRACTION > 0


def test_cine_loop_ignores_static_text() -> None:
    rng = np.random.default_rng(5)
    subject = draw_subject(rng, "solid_round")
    truth = sector_mask(subject.fan, 160)
    frames = []
    for _ in range(6):
        image, _ = render_subject(perturb_subject(subject, rng), rng, size=160)
        gray = image if image.ndim == 2 else image[..., 0]
        rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.uint8)
        rgb[150:158, 0:60] = 255  # a static white ruler below the sector, identical in every frame
        frames.append(rgb)
    found = detect_fan_mask_sequence(frames)
    assert _iou(found, truth) > 0.85
    assert not found[150:158, 0:60].any() or truth[150:158, 0:60].any()
    assert (detect_fan_mask_sequence(frames[:1]) == detect_fan_mask(frames[0])).all()


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        detect_fan_mask(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least one frame"):
        detect_fan_mask_sequence([])
