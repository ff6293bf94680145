"""A segmenter on the page: ``sonofm.load(...).predict``'s class-id mask, its overlay, legend and areas."""

from __future__ import annotations

from typing import Any

import numpy as np

from sonofm.serve.loaded_runner import LoadedModelRunner
from sonofm.serve.rendering import mask_result


class SegmenterRunner(LoadedModelRunner):
    task = "seg"

    def predict(self, image: np.ndarray, pixel_size_mm: float | None) -> dict[str, Any]:
        ids = self.loaded.predict(image, precision=self.precision)[0]
        return {"kind": "mask", **mask_result(ids, self.classes, pixel_size_mm)}
