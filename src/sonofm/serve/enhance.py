"""An enhancer on the page: ``sonofm.load(...).predict``'s restored image, shown against the input."""

from __future__ import annotations

from typing import Any

import numpy as np

from sonofm.api import LoadedModel
from sonofm.serve.rendering import data_url


class EnhancerRunner:
    task = "enhance"

    def __init__(self, loaded: LoadedModel, precision: str) -> None:
        self.loaded = loaded
        self.precision = precision
        self.classes = loaded.classes
        self.img_size = loaded.loaded.img_size

    def predict(self, image: np.ndarray, pixel_size_mm: float | None) -> dict[str, Any]:
        restored = self.loaded.predict(image, precision=self.precision)[0]
        return {"kind": "restored", "restored": data_url(restored)}
