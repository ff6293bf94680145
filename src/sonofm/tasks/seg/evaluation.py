"""Segmentation metrics at each image's own size, per-image rows, and the example-overlay figure."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from sonofm.atomic import atomic_write_text
from sonofm.data.image_io import read_image, read_mask
from sonofm.data.records import Sample
from sonofm.errors import SonofmError
from sonofm.metrics.head_circumference import HeadCircumferenceErrors
from sonofm.metrics.segmentation import SegmentationMetrics
from sonofm.report.figures import plot_segmentation_examples
from sonofm.tasks.seg.segment_files import segment_images

# labels.csv columns read as the pixel size in mm of the stored images, in this order, when none is configured.
PIXEL_SIZE_COLUMNS = ("pixel_size_mm", "pixel_size_mm_resized", "pixel_size")


def pixel_size_column(samples: Sequence[Sample], configured: str | None) -> str | None:
    """The ``labels.csv`` column holding pixel sizes: ``configured``, else the first of PIXEL_SIZE_COLUMNS present."""
    columns = set().union(*(sample.meta for sample in samples)) if samples else set()
    if configured is not None:
        if samples and configured not in columns:
            raise SonofmError(f"pixel_size_column {configured!r} is not a labels.csv column; have {sorted(columns)}")
        return configured
    return next((name for name in PIXEL_SIZE_COLUMNS if name in columns), None)


def pixel_size_of(sample: Sample, column: str | None) -> float | None:
    """The sample's pixel size in mm from ``column`` (None without a column or an empty cell)."""
    if column is None or not sample.meta.get(column, "").strip():
        return None
    text = sample.meta[column]
    try:
        value = float(text)
    except ValueError:
        raise SonofmError(f"labels.csv column {column!r} of {sample.image.name}: {text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise SonofmError(f"labels.csv column {column!r} of {sample.image.name}: pixel size must be > 0, got {text}")
    return value


def evaluate_segmentation(
    model: nn.Module, samples: Sequence[Sample], img_size: int, class_names: list[str], ignore_index: int = 255,
    pixel_column: str | None = None, precision: str = "auto", progress: bool = True, desc: str = "evaluate",
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Dice, IoU, HD95 (px, and mm with pixel sizes), pixel accuracy of ``model`` on ``samples`` at their own size;
    with one foreground class also the head-circumference error (``hc_abs_error``, px and mm).

    Returns ``(metrics, per_image_rows)``; rows hold the image name and its per-image values as text.
    """
    predictions = segment_images(model, [sample.image for sample in samples], img_size, precision=precision,
                                 progress=progress, desc=desc)
    return score_label_maps(predictions, samples, class_names, ignore_index, pixel_column)


def score_label_maps(predictions: Iterable[tuple[int, torch.Tensor]], samples: Sequence[Sample],
                     class_names: list[str], ignore_index: int = 255,
                     pixel_column: str | None = None) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Metrics of ``(position in samples, int64 (H, W) predicted ids)`` pairs against the samples' masks.

    Returns ``(metrics, per_image_rows)`` as :func:`evaluate_segmentation` does.
    """
    metrics = SegmentationMetrics(class_names, ignore_index)
    circumferences = HeadCircumferenceErrors() if len(class_names) == 2 else None
    scored = []
    for position, prediction in predictions:
        sample = samples[position]
        truth = torch.from_numpy(read_mask(sample.mask))
        if truth.shape != prediction.shape:
            raise SonofmError(f"mask size {truth.shape[1]}x{truth.shape[0]} != image size "
                              f"{prediction.shape[1]}x{prediction.shape[0]}: {sample.mask}")
        check_mask_ids(truth, len(class_names), ignore_index, sample.mask)
        pixel_size = pixel_size_of(sample, pixel_column)
        metrics.update(prediction, truth, pixel_size)
        if circumferences is not None:
            circumferences.update(prediction, truth, pixel_size)
        scored.append(sample)
    per_image = metrics.per_image()
    summary = metrics.compute()
    if circumferences is not None:
        per_image = [{**values, **extra} for values, extra in zip(per_image, circumferences.per_image())]
        summary.update(circumferences.compute())
    rows = [
        {"name": sample.name, **{key: f"{value:.6g}" for key, value in values.items()}}
        for sample, values in zip(scored, per_image)
    ]
    return summary, rows


def write_per_image_csv(rows: list[dict[str, str]], path: str | Path) -> Path:
    """Per-image metric rows as CSV, written atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def plot_examples(model: nn.Module, samples: Sequence[Sample], img_size: int, class_names: list[str], path: str | Path,
                  title: str, precision: str = "auto") -> Path:
    """Image / ground truth / prediction overlays of ``samples`` (a handful) at their own size."""
    predictions = dict(segment_images(model, [s.image for s in samples], img_size, precision=precision, progress=False))
    return plot_label_maps(predictions, samples, class_names, path, title)


def plot_label_maps(predictions: dict[int, torch.Tensor], samples: Sequence[Sample], class_names: list[str],
                    path: str | Path, title: str) -> Path:
    """Image / ground truth / prediction overlays from predicted id maps keyed by position in ``samples``."""
    examples = [
        (sample.name, read_image(sample.image), read_mask(sample.mask), predictions[position].numpy())
        for position, sample in enumerate(samples)
    ]
    return plot_segmentation_examples(examples, class_names, path, title)


def check_mask_ids(mask: torch.Tensor, num_classes: int, ignore_index: int, path: Path | None) -> None:
    """SonofmError naming ``path`` when ``mask`` holds an id that is neither a class nor ``ignore_index``."""
    bad = (mask >= num_classes) & (mask != ignore_index)
    if bad.any():
        raise SonofmError(f"mask {path} has class id {int(mask[bad].max())} but the model has {num_classes} classes "
                          f"(0..{num_classes - 1}; {ignore_index} = ignore)")
