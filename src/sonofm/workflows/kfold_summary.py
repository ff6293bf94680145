"""The numbers of a k-fold cross-validation: per-fold, mean and std over folds, and pooled over all test folds."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch

from sonofm.atomic import atomic_write_text
from sonofm.data.records import Sample
from sonofm.data.splits import group_key
from sonofm.metrics.classification import confusion_metrics

TABLE_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


def summarise_folds(fold_metrics: list[dict[str, float]], summed: torch.Tensor, classes: list[str]) -> dict[str, float]:
    """Flat summary of the folds' ``metrics.json`` values and the (C, C) sum of their test confusion matrices.

    Keys: ``fold_K/test/<metric>`` and ``fold_K/best_epoch`` per fold; ``mean/<metric>`` and ``std/<metric>`` over
    the folds for every ``test/<metric>`` (population std, numpy's default; a fold's NaN, such as the recall of a
    class absent from its test part, is left out); ``pooled/<metric>`` from the summed confusion matrix (accuracy,
    balanced accuracy, macro F1, per-class precision and recall).
    """
    summary: dict[str, float] = {}
    for fold, values in enumerate(fold_metrics):
        summary.update({f"fold_{fold}/{key}": value for key, value in values.items()
                        if key.startswith("test/") or key == "best_epoch"})
    for key in (key.removeprefix("test/") for key in fold_metrics[0] if key.startswith("test/")):
        summary[f"mean/{key}"], summary[f"std/{key}"] = mean_std([values[f"test/{key}"] for values in fold_metrics])
    pooled = confusion_metrics(summed, classes)
    summary.update({f"pooled/{key}": value for key, value in pooled.items()})
    return summary


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation of the non-NaN ``values``; NaN, NaN when there are none."""
    finite = np.array([value for value in values if not math.isnan(value)], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std())


def write_folds_summary(path: str | Path, fold_metrics: list[dict[str, float]],
                        fold_splits: list[dict[str, list[Sample]]]) -> Path:
    """One CSV row per fold: image counts of its train/val/test parts, test groups, test metrics, best epoch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["fold", "train_images", "val_images", "test_images", "test_groups", *TABLE_KEYS, "best_epoch"])
    for fold, (values, splits) in enumerate(zip(fold_metrics, fold_splits, strict=True)):
        counts = [len(splits.get(name, [])) for name in ("train", "val", "test")]
        groups = len({group_key(sample) for sample in splits.get("test", [])})
        scores = [f"{values.get(f'test/{key}', math.nan):.4f}" for key in TABLE_KEYS]
        writer.writerow([fold, *counts, groups, *scores, int(values.get("best_epoch", -1))])
    return atomic_write_text(path, buffer.getvalue())


def format_table(summary: dict[str, float], test_sizes: list[int]) -> str:
    """A fixed-width table: one line per fold (test images and metrics), then mean ± std and pooled values."""
    header = f"{'fold':>6}  {'test':>5}  " + "  ".join(f"{key:>17}" for key in TABLE_KEYS)
    lines = [header]
    for fold, size in enumerate(test_sizes):
        scores = "  ".join(f"{summary.get(f'fold_{fold}/test/{key}', math.nan):>17.4f}" for key in TABLE_KEYS)
        lines.append(f"{fold:>6}  {size:>5}  {scores}")
    spread = "  ".join(f"{summary[f'mean/{key}']:>8.4f} ± {summary[f'std/{key}']:<6.4f}" for key in TABLE_KEYS)
    lines.append(f"{'mean':>6}  {sum(test_sizes):>5}  {spread}")
    pooled = "  ".join(f"{summary.get(f'pooled/{key}', math.nan):>17.4f}" for key in TABLE_KEYS)
    lines.append(f"{'pooled':>6}  {sum(test_sizes):>5}  {pooled}  (from the summed confusion matrix; no AUROC)")
    return "\n".join(lines)
