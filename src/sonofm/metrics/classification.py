"""Classification metrics over a whole split (torchmetrics functional implementations)."""

from __future__ import annotations

import math
import warnings

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1, macro AUROC and per-class precision/recall.

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) integer class ids.
        class_names: C names, used in the per-class keys ``precision/<name>``, ``recall/<name>``.

    Returns:
        flat dict; balanced accuracy is the mean recall over the classes present in ``labels``. AUROC is NaN when fewer
        than two classes are present.
    """
    num_classes = len(class_names)
    probs = probs.float()
    labels = labels.long()
    present = torch.bincount(labels, minlength=num_classes) > 0
    recall = multiclass_recall(probs, labels, num_classes=num_classes, average="none")
    precision = multiclass_precision(probs, labels, num_classes=num_classes, average="none")
    metrics = {
        "accuracy": multiclass_accuracy(probs, labels, num_classes=num_classes, average="micro").item(),
        "balanced_accuracy": recall[present].mean().item() if present.any() else math.nan,
        "macro_f1": multiclass_f1_score(probs, labels, num_classes=num_classes, average="macro").item(),
        "auroc": _auroc(probs, labels, num_classes, present),
    }
    for index, name in enumerate(class_names):
        metrics[f"precision/{name}"] = precision[index].item()
        metrics[f"recall/{name}"] = recall[index].item() if present[index] else math.nan
    return metrics


def confusion_matrix(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts; rows are true classes, columns predicted classes."""
    return multiclass_confusion_matrix(probs.float(), labels.long(), num_classes=num_classes)


def confusion_metrics(matrix: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """The metrics of :func:`classification_metrics` that a (C, C) confusion matrix (rows true, columns predicted)
    determines, with its conventions: accuracy, balanced accuracy, macro F1 (over classes that occur in truth or
    prediction), per-class ``precision/<name>`` (0 when never predicted) and ``recall/<name>`` (NaN when absent).
    No AUROC: that needs the probabilities."""
    counts = matrix.double()
    hits = counts.diagonal()
    truths, predictions = counts.sum(dim=1), counts.sum(dim=0)
    precision = torch.where(predictions > 0, hits / predictions.clamp_min(1), 0.0)
    recall = hits / truths.clamp_min(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), 0.0)
    occurring = (truths + predictions) > 0
    present = truths > 0
    metrics = {
        "accuracy": (hits.sum() / counts.sum()).item() if counts.sum() > 0 else math.nan,
        "balanced_accuracy": recall[present].mean().item() if present.any() else math.nan,
        "macro_f1": f1[occurring].mean().item() if occurring.any() else math.nan,
    }
    for index, name in enumerate(class_names):
        metrics[f"precision/{name}"] = precision[index].item()
        metrics[f"recall/{name}"] = recall[index].item() if present[index] else math.nan
    return metrics


def _auroc(probs: torch.Tensor, labels: torch.Tensor, num_classes: int, present: torch.Tensor) -> float:
    """Macro one-vs-rest AUROC over the classes present in ``labels`` (absent classes are left out, so torchmetrics'
    warning about them is silenced)."""
    if int(present.sum()) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No positive samples in targets")
        per_class = multiclass_auroc(probs, labels, num_classes=num_classes, average="none")
    return per_class[present].mean().item()
