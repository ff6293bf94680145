"""A classifier on the page: class probabilities (``sonofm.load(...).predict``'s) and a Grad-CAM heatmap of the
predicted class."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from sonofm.api import LoadedModel
from sonofm.data.transforms import ClassificationTransform
from sonofm.engine.precision import inference_device
from sonofm.report.gradcam import grad_cam
from sonofm.serve.loaded_runner import LoadedModelRunner
from sonofm.serve.rendering import data_url, heatmap


class ClassifierRunner(LoadedModelRunner):
    task = "cls"

    def __init__(self, loaded: LoadedModel, precision: str) -> None:
        super().__init__(loaded, precision)
        self.transform = ClassificationTransform(self.img_size, train=False)

    def predict(self, image: np.ndarray, pixel_size_mm: float | None) -> dict[str, Any]:
        probabilities = self.loaded.predict(image, precision=self.precision)[0]
        predicted = max(probabilities, key=probabilities.__getitem__)
        cam = self._grad_cam(image, self.classes.index(predicted))
        return {"kind": "classes", "probabilities": probabilities, "predicted": predicted,
                "gradcam": data_url(heatmap(cam))}

    def _grad_cam(self, image: np.ndarray, target: int) -> np.ndarray:
        """The Grad-CAM of class ``target`` at the image's size, in [0, 1]."""
        device = inference_device()
        model = self.loaded.model.to(device).eval()
        cams, _ = grad_cam(model, self.transform(image)[None].to(device), torch.tensor([target]))
        full = F.interpolate(cams[None].float(), size=image.shape[:2], mode="bilinear", align_corners=False)
        return full[0, 0].clamp(0, 1).cpu().numpy()
