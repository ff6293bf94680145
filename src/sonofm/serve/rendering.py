"""What the page shows, as JSON-ready values: PNG data URLs of frames, masks, overlays and heatmaps, the class
legend and mask areas (mm² when the pixel size is known, else px²)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image
from scipy import ndimage

from sonofm.report.overlay import class_colours

HEATMAP_ALPHA = 0.75  # opacity of the strongest Grad-CAM evidence (weaker evidence fades out)
FAN_COLOUR = (0, 229, 255)


def png_bytes(array: np.ndarray) -> bytes:
    """``uint8`` ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` as PNG (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode("ascii")


def class_overlay(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """``uint8 (H, W, 4)``: each class's colour (those of the report's overlays), transparent on background."""
    colours = class_colours(num_classes).astype(np.uint8)
    coloured = (ids > 0) & (ids < num_classes)
    rgba = np.zeros((*ids.shape, 4), dtype=np.uint8)
    rgba[..., :3] = colours[np.where(coloured, ids, 0)]
    rgba[..., 3] = np.where(coloured, 255, 0)
    return rgba


def heatmap(cam: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 4)`` jet colours of a ``[0, 1]`` map, more opaque where the value is higher."""
    rgba = colormaps["jet"](np.clip(cam, 0, 1))
    rgba[..., 3] = np.clip(cam, 0, 1) * HEATMAP_ALPHA
    return (rgba * 255).round().astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 4)``: a region's border (2 px) opaque and its inside faintly tinted."""
    border = mask & ~ndimage.binary_erosion(mask, iterations=2)
    rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba[mask, :3] = FAN_COLOUR
    rgba[..., 3] = np.where(border, 255, np.where(mask, 40, 0))
    return rgba


def area(pixels: int, pixel_size_mm: float | None) -> dict[str, Any]:
    """``{"pixels", "area", "unit"}``: mm² with a pixel size (square pixels), else px²."""
    if pixel_size_mm is None:
        return {"pixels": pixels, "area": float(pixels), "unit": "px²"}
    return {"pixels": pixels, "area": pixels * pixel_size_mm**2, "unit": "mm²"}


def mask_result(ids: np.ndarray, classes: list[str], pixel_size_mm: float | None) -> dict[str, Any]:
    """A class-id mask for the page: its overlay, the mask itself as a PNG of ids (as ``sonofm predict`` writes
    it), and per foreground class its colour and area."""
    counts = np.bincount(ids.ravel(), minlength=len(classes))
    colours = class_colours(len(classes)).astype(int)
    legend = [{"id": class_id, "name": classes[class_id], "colour": "#%02x%02x%02x" % tuple(colours[class_id]),
               **area(int(counts[class_id]), pixel_size_mm)} for class_id in range(1, len(classes))]
    return {"overlay": data_url(class_overlay(ids, len(classes))),
            "mask": data_url(ids.astype(np.uint8 if len(classes) <= 256 else np.uint16)), "legend": legend}
