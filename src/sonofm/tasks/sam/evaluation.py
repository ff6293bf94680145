"""A-SAM predictions and metrics at each image's own size, prompted (clicks/boxes from the masks) or automatic."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from sonofm.data.datasets import SegmentationDataset
from sonofm.data.image_io import image_size
from sonofm.data.records import Sample
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.errors import SonofmError
from sonofm.progress import progress_bar
from sonofm.sam.adapted import AdaptedSam
from sonofm.sam.prompts import Prompts, prompts_from_masks
from sonofm.tasks.seg.evaluation import plot_label_maps, score_label_maps
from sonofm.tasks.seg.segment_files import segment_images

EVAL_MODES = ("prompt", "auto")


def sam_label_maps(model: AdaptedSam, samples: Sequence[Sample], mode: str, kind: str = "point",
                   batch_size: int = 8, precision: str = "auto", progress: bool = True,
                   desc: str = "evaluate") -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(position in samples, int64 (H, W) class ids)`` at each image's own size.

    ``mode="auto"``: the prompter's anatomy map. ``mode="prompt"``: one fixed ``kind`` prompt per class present in
    the (resized) ground truth; each class's probability map is resized to the image, and a pixel takes the class
    whose probability is highest, if above 0.5.
    """
    if mode == "auto":
        yield from segment_images(model, [s.image for s in samples], model.img_size, batch_size, precision,
                                  progress=progress, desc=desc)
        return
    if mode != "prompt":
        raise SonofmError(f"mode must be one of {', '.join(EVAL_MODES)}, got {mode!r}")
    device = inference_device()
    model = model.to(device).eval()
    loader = DataLoader(SegmentationDataset(samples, model.img_size, train=False), batch_size=batch_size)
    position = 0
    with torch.inference_mode():
        for images, masks in progress_bar(loader, desc=desc, unit="batch", disable=not progress):
            masks = masks.to(device)
            with autocast_for(device, precision):
                embeddings = model.embed(images.to(device))
                prompts = prompts_from_masks(masks, len(model.classes), kind)
                probs = model.prompted_logits(embeddings, prompts).float().sigmoid() if len(prompts) else None
            for index in range(len(images)):
                width, height = image_size(samples[position].image)
                yield position, _assemble(probs, prompts, index, (height, width))
                position += 1


def _assemble(probs: torch.Tensor | None, prompts: Prompts, image: int, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel class of the most probable prompted mask of ``image`` (above 0.5), at ``size``."""
    labels = torch.zeros(size, dtype=torch.int64)
    if probs is None:
        return labels
    best = torch.full(size, 0.5)
    for prompt in (prompts.image_index == image).nonzero().flatten().tolist():
        prob = F.interpolate(probs[prompt][None, None], size=size, mode="bilinear", align_corners=False)[0, 0].cpu()
        take = prob > best
        labels[take] = int(prompts.class_id[prompt])
        best = torch.maximum(best, prob)
    return labels


def evaluate_sam(model: AdaptedSam, samples: Sequence[Sample], mode: str, kinds: Sequence[str],
                 ignore_index: int = 255, pixel_column: str | None = None, precision: str = "auto",
                 progress: bool = True, desc: str = "evaluate") -> tuple[dict[str, float], dict[str, list[dict]]]:
    """Metrics keyed ``<tag>/<metric>`` (tag: each prompt kind, or ``auto``) and per-image rows per tag."""
    metrics: dict[str, float] = {}
    rows: dict[str, list[dict]] = {}
    for kind in (kinds if mode == "prompt" else ["auto"]):
        maps = sam_label_maps(model, samples, mode, kind, precision=precision, progress=progress,
                              desc=f"{desc} ({kind})")
        values, rows[kind] = score_label_maps(maps, samples, model.classes, ignore_index, pixel_column)
        metrics.update({f"{kind}/{key}": value for key, value in values.items()})
    return metrics, rows


def plot_sam_examples(model: AdaptedSam, samples: Sequence[Sample], mode: str, kind: str, path: str | Path,
                      title: str, precision: str = "auto") -> Path:
    """Image / ground truth / A-SAM prediction overlays for a handful of ``samples``."""
    predictions = dict(sam_label_maps(model, samples, mode, kind, precision=precision, progress=False))
    return plot_label_maps(predictions, samples, model.classes, path, title)
