"""Segment image files at their own size: resize to the model's input, predict, map scores back, take the argmax."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from sonofm.data.datasets import ImageFileDataset
from sonofm.data.image_io import image_size
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.progress import progress_bar


def segment_images(model: nn.Module, paths: Sequence[str | Path], img_size: int, batch_size: int = 8,
                   precision: str = "auto", device: torch.device | None = None, progress: bool = True,
                   desc: str = "segment") -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(position in paths, int64 (H, W) class ids)`` with ``H x W`` the image file's own size.

    ``model`` is a :class:`~sonofm.models.segmenter.Segmenter`; its ``(B, K, S, S)`` class scores are resized
    bilinearly to each image's size before the argmax, so predictions align exactly with the original pixels.
    """
    device = device or inference_device()
    model = model.to(device).eval()
    loader = DataLoader(ImageFileDataset(paths, img_size), batch_size=batch_size)
    with torch.inference_mode():
        for images, positions in progress_bar(loader, desc=desc, unit="batch", disable=not progress):
            with autocast_for(device, precision):
                scores = model.predict(images.to(device))
            for score, position in zip(scores.float(), positions.tolist()):
                width, height = image_size(paths[position])
                resized = F.interpolate(score[None], size=(height, width), mode="bilinear", align_corners=False)
                yield position, resized[0].argmax(dim=0).cpu()
