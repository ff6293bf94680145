"""The fan mask of an upload on request: from the frame's gray content for a still image, from the variation
between frames for a cine loop or multi-frame DICOM (burned-in text does not move)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sonofm.data.fan_mask import detect_fan_mask, detect_fan_mask_sequence
from sonofm.serve.rendering import area, data_url, outline
from sonofm.serve.sessions import Upload

SEQUENCE_FRAMES = 32  # frames of a loop the fan is detected from, evenly spaced


def fan_result(upload: Upload, frame: int) -> dict[str, Any]:
    """The fan's outline overlay and area, computed once per upload (per frame for a single image)."""
    key = ("fan",) if upload.file.frames > 1 else ("fan", frame)
    mask, _ = upload.result(key, lambda: _detect(upload, frame))
    return {"overlay": data_url(outline(mask)), **area(int(mask.sum()), upload.file.pixel_size_mm)}


def _detect(upload: Upload, frame: int) -> np.ndarray:
    if upload.file.frames == 1:
        return detect_fan_mask(upload.frame(frame))
    picked = np.unique(np.linspace(0, upload.file.frames - 1, SEQUENCE_FRAMES).round().astype(int))
    return detect_fan_mask_sequence([upload.frame(int(index), keep=False) for index in picked])
