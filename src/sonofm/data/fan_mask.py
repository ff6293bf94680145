"""Detect the ultrasound acquisition region (the sector or "fan") of an image or a cine loop.

Scanners write the B-mode picture into a sector (curvilinear, phased array) or a rectangle (linear probe) on a black
screen, and burn text, rulers and coloured markers into the rest. The fan mask is True inside that acquisition region
so losses and metrics can ignore borders and annotations.

Single image: gray pixels brighter than a low threshold (after a small local mean, so dark speckle inside the fan
counts), coloured pixels excluded, holes filled (dark cysts and shadows inside the fan), thin bridges to text removed
by an opening, small parts (text, markers) dropped, what remains eroded by the local mean's window (which had spread
it over the dark border), and the convex hull of that taken, which restores dark anatomy touching the sector edge
(fluid, vessels, shadows). Cine loop: the same, on the temporal variation of the frames
(text and borders do not change between frames), falling back to the brightest projection for a still loop.
An image where no plausible fan is found (the region covers under ``MIN_FAN_FRACTION`` of it, e.g. an image already
cropped to its content) gets an all-True mask, so callers never lose the whole image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

MIN_FAN_FRACTION = 0.1
"""A detected region smaller than this fraction of the image is not taken as the fan."""

MIN_PART_FRACTION = 0.01
"""Bright parts smaller than this fraction of the image (text, markers) are not part of the fan."""

_BRIGHTNESS_THRESHOLD = 10.0  # on the 0-255 scale, after the local mean
_COLOUR_SPREAD = 40  # max - min over RGB above this marks a coloured annotation pixel
_MOTION_THRESHOLD = 2.0  # temporal standard deviation (0-255 scale) of a pixel inside the fan of a moving loop


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` uint8 → ``(H, W, 3)`` (alpha dropped)."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W) or (H, W, 1|3|4) image, got shape {image.shape}")
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]


def _smoothing_size(shape: tuple[int, int]) -> int:
    """Odd window (pixels) of the local mean and the opening: about 1.5 % of the shorter side, at least 3."""
    return max(3, int(round(min(shape) * 0.015)) | 1)


def _square_morphology(operation: Callable[..., np.ndarray], mask: np.ndarray, size: int) -> np.ndarray:
    """``operation`` (``ndimage.binary_opening``, ``binary_erosion``) of ``mask`` with a ``size`` square, the image
    edge being no boundary."""
    padded = np.pad(mask, size, mode="edge")
    return operation(padded, structure=np.ones((size, size), dtype=bool))[size:-size, size:-size]


def _convex_region(candidate: np.ndarray, size: int) -> np.ndarray:
    """Convex hull of the large parts of ``candidate`` (bool (H, W)), a ``size`` local-mean threshold.

    Holes are filled, then a ``size`` opening cuts thin rulers and bridges to text, and parts under
    ``MIN_PART_FRACTION`` of the image (characters, markers) are dropped. The kept parts are eroded by ``size``,
    which takes back the half window by which the local mean spread the fan over its dark surroundings (and onto a
    marker beside the sector edge). The hull brings back dark anatomy (fluid, vessels, shadows) at the sector edge.
    """
    opened = _square_morphology(ndimage.binary_opening, ndimage.binary_fill_holes(candidate), size)
    labels, count = ndimage.label(opened)
    if count == 0:
        return opened
    areas = np.bincount(labels.ravel())[1:]
    large = np.flatnonzero(areas >= MIN_PART_FRACTION * candidate.size) + 1
    if len(large) == 0:
        return np.zeros_like(candidate, dtype=bool)
    ys, xs = np.nonzero(_square_morphology(ndimage.binary_erosion, np.isin(labels, large), size))
    return _filled_hull(np.stack([xs, ys], axis=1), candidate.shape)


def _filled_hull(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool ``shape`` mask of the convex hull of pixel ``points`` ``(N, 2)`` given as (x, y), boundary included."""
    canvas = Image.new("1", (shape[1], shape[0]), 0)
    try:
        vertices = points[ConvexHull(points).vertices]
    except QhullError:  # all points on one line: their bounding box is the hull
        vertices = np.array([points.min(axis=0), points.max(axis=0)])
        ImageDraw.Draw(canvas).rectangle([tuple(map(int, v)) for v in vertices], fill=1)
        return np.asarray(canvas, dtype=bool)
    ImageDraw.Draw(canvas).polygon([tuple(map(int, v)) for v in vertices], fill=1)
    return np.asarray(canvas, dtype=bool)


def _or_everything(region: np.ndarray) -> np.ndarray:
    """``region`` when it is a plausible fan, else an all-True mask of the same shape."""
    if region.mean() < MIN_FAN_FRACTION:
        return np.ones_like(region, dtype=bool)
    return region


def _gray_content(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(gray float (H, W), coloured bool (H, W))`` of an RGB uint8 image."""
    wide = rgb.astype(np.int16)
    coloured = (wide.max(axis=2) - wide.min(axis=2)) > _COLOUR_SPREAD
    gray = wide.mean(axis=2).astype(np.float32)
    gray[coloured] = 0.0
    return gray, coloured


def detect_fan_mask(image: np.ndarray) -> np.ndarray:
    """Fan mask of one uint8 image ``(H, W)`` or ``(H, W, 3|4)`` → bool ``(H, W)``, True inside the sector."""
    rgb = _as_rgb(np.asarray(image))
    gray, _ = _gray_content(rgb)
    size = _smoothing_size(gray.shape)
    bright = ndimage.uniform_filter(gray, size=size) > _BRIGHTNESS_THRESHOLD
    return _or_everything(_convex_region(bright, size))


def detect_fan_mask_sequence(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """One fan mask for a cine loop: ``T`` uint8 frames of one size → bool ``(H, W)``.

    Pixels that change over the loop are the acquisition region; static text and borders are not. A loop that
    barely moves (or a single frame) falls back to :func:`detect_fan_mask` of its per-pixel maximum.
    """
    if len(frames) == 0:
        raise ValueError("detect_fan_mask_sequence needs at least one frame")
    stack = np.stack([_as_rgb(np.asarray(frame)) for frame in frames])  # (T, H, W, 3)
    brightest = stack.max(axis=0)
    if len(stack) < 2:
        return detect_fan_mask(brightest)
    grays = np.stack([_gray_content(frame)[0] for frame in stack])  # (T, H, W)
    size = _smoothing_size(grays.shape[1:])
    moving = ndimage.uniform_filter(grays.std(axis=0), size=size) > _MOTION_THRESHOLD
    if moving.mean() < MIN_FAN_FRACTION:
        return detect_fan_mask(brightest)
    return _or_everything(_convex_region(moving, size))
