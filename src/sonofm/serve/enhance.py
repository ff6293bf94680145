"""An enhancer on the page: ``sonofm.load(...).predict``'s restored image, shown against the input."""

from __future__ import annotations

from typing import Any

import numpy as np

from sonofm.serve.loaded_runner import LoadedModelRunner
from sonofm.serve.rendering import data_url


class EnhancerRunner(LoadedModelRunner):
    task = "enhance"

    def predict(self, image: np.ndarray, pixel_size_mm: float | None) -> dict[str, Any]:
        restored = self.loaded.predict(image, precision=self.precision)[0]
        return {"kind": "restored", "restored": data_url(restored)}
