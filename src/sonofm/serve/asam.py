"""An A-SAM on the page: the image embedding (computed once per image and frame, cached by the caller), masks from
clicks and a box (prompt encoder and mask decoder only), and the class prompter's anatomy map."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sonofm.data.transforms import ClassificationTransform
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.errors import SonofmError
from sonofm.sam.adapted import AdaptedSam
from sonofm.sam.interactive import Box, Click, image_prompt, prompted_mask
from sonofm.serve.rendering import mask_result
from sonofm.tasks.sam.automask import anatomy_map

PROMPTED_CLASSES = ["background", "mask"]  # a prompted mask is one region, whatever its class


class SamRunner:
    task = "sam"

    def __init__(self, model: AdaptedSam, precision: str) -> None:
        self.device = inference_device()
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.classes = model.classes
        self.img_size = model.img_size
        self.automatic = model.prompter is not None
        self.transform = ClassificationTransform(self.img_size, train=False)

    def embed(self, image: np.ndarray) -> Tensor:
        """The image embedding ``(1, C, h, w)`` of a ``uint8 (H, W, 3)`` image, on the model's device."""
        with torch.inference_mode(), autocast_for(self.device, self.precision):
            return self.model.embed(self.transform(image)[None].to(self.device))

    def prompt(self, embedding: Tensor, size: tuple[int, int], clicks: list[Click], box: Box | None,
               pixel_size_mm: float | None) -> dict[str, Any]:
        """The mask of ``clicks`` and ``box`` (pixel indices of the image of ``size`` = (width, height))."""
        prompt = image_prompt(clicks, box, size, self.img_size)
        with torch.inference_mode(), autocast_for(self.device, self.precision):
            mask = prompted_mask(self.model, embedding, prompt, size)
        return {"kind": "mask", **mask_result(mask.astype(np.int64), PROMPTED_CLASSES, pixel_size_mm)}

    def anatomy(self, embedding: Tensor, size: tuple[int, int], pixel_size_mm: float | None) -> dict[str, Any]:
        """The class prompter's anatomy map at ``size`` = (width, height), and its mean confidence."""
        if not self.automatic:
            raise SonofmError("this A-SAM has no automatic prompter; train one with `sonofm sam train-prompter`, "
                              "or click or draw a box on the image")
        with torch.inference_mode(), autocast_for(self.device, self.precision):
            scores = self.model.class_scores(embedding)
        ids, confidence = anatomy_map(scores[0].float(), size)
        return {"kind": "mask", "confidence": confidence, **mask_result(ids.numpy(), self.classes, pixel_size_mm)}
