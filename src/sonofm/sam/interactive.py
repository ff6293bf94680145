"""Interactive A-SAM prompting: positive and negative clicks and a box given in an image's own pixels, one mask at
the image's size from an image embedding computed once (only the prompt encoder and mask decoder run per prompt)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from sonofm.errors import SonofmError
from sonofm.sam.adapted import AdaptedSam
from sonofm.sam.prompts import Prompts

Click = tuple[float, float, int]  # (x, y, label): pixel indices of the image, label 1 positive, 0 negative
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1): inclusive pixel indices of the image


def image_prompt(clicks: Sequence[Click], box: Box | None, size: tuple[int, int], img_size: int) -> Prompts:
    """One prompt on one image of ``size`` = (width, height), in the model's ``img_size`` square input frame.

    A pixel index keeps its pixel's centre through the resize: ``x' = (x + 0.5) * S / W - 0.5`` (and so for y).
    """
    if not clicks and box is None:
        raise SonofmError("a prompt needs at least one click or a box")
    if any(label not in (0, 1) for _, _, label in clicks):
        raise SonofmError("a click's label must be 1 (positive) or 0 (negative)")
    width, height = size
    scale = torch.tensor([img_size / width, img_size / height])
    prompt = Prompts(torch.zeros(1, dtype=torch.int64), torch.ones(1, dtype=torch.int64))
    if clicks:
        points = torch.tensor([[x, y] for x, y, _ in clicks], dtype=torch.float32)
        prompt.points = ((points + 0.5) * scale - 0.5)[None]
        prompt.point_labels = torch.tensor([[label for _, _, label in clicks]], dtype=torch.int64)
    if box is not None:
        corners = torch.tensor(box, dtype=torch.float32).view(2, 2)
        prompt.boxes = ((corners + 0.5) * scale - 0.5).view(1, 4)
    return prompt


def prompted_mask(model: AdaptedSam, embedding: Tensor, prompt: Prompts, size: tuple[int, int]) -> np.ndarray:
    """``bool (H, W)`` mask at ``size`` = (width, height) for one prompt on the image of ``embedding`` (1, C, h, w):
    its probability map resized bilinearly to the image, above 0.5 (as ``sonofm sam evaluate``)."""
    probs = model.prompted_logits(embedding, prompt.to(embedding.device)).float().sigmoid()
    width, height = size
    resized = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return (resized > 0.5).cpu().numpy()
