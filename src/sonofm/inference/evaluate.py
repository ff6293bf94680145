"""``sonofm evaluate``: metrics of a finished run on its own split or on another dataset (classification,
segmentation or enhancement)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from sonofm.atomic import atomic_write_json
from sonofm.data.datasets import ClassificationDataset
from sonofm.data.layouts import load_index
from sonofm.data.records import Sample
from sonofm.data.splits import load_split
from sonofm.data.validate import assert_valid
from sonofm.engine.config import TrainingConfig
from sonofm.errors import SonofmError
from sonofm.metrics.classification import classification_metrics, confusion_matrix
from sonofm.progress import progress_bar
from sonofm.report.figures import plot_confusion_matrix
from sonofm.runs.config import load_config
from sonofm.runs.run_folder import RunFolder
from sonofm.runs.run_model import RunModel, load_run_model
from sonofm.tasks.cls.finetune import ClsFinetuneConfig
from sonofm.tasks.enhance.finetune import EnhanceFinetuneConfig, evaluate_enhancement_run
from sonofm.tasks.seg.evaluation import evaluate_segmentation, pixel_size_column, write_per_image_csv
from sonofm.tasks.seg.finetune import SegFinetuneConfig


def evaluate_run(run_path: str | Path, data: str | None = None, split: str = "test", batch_size: int = 32,
                 progress: bool = True) -> tuple[dict[str, float], Path]:
    """Evaluate ``run_path``'s model; return ``(metrics, json_path)``.

    Without ``data`` the run's own ``split.csv`` selects the images of ``split``. With ``data``, a layout that has
    splits is evaluated on ``split``; a layout without splits is evaluated whole. Class names must match the run's
    (classification) or the number of mask classes must (segmentation). Segmentation is measured at each image's
    own size and also writes ``per_image_<tag>.csv``. Enhancement runs degrade the images as in training (fixed per
    image) and report restored and ``*_degraded`` PSNR/SSIM, with ``per_image_<tag>.csv`` and ``examples_<tag>.png``.
    """
    run = RunFolder(Path(run_path))
    loaded = load_run_model(run.path)
    if loaded.task == "enhance":
        enhance_config = load_config(EnhanceFinetuneConfig, run.config)
        enhance_config.batch_size = batch_size
        values, tag = evaluate_enhancement_run(run, loaded.model, enhance_config, data, split)
        metrics = {f"{split}/{key}": value for key, value in values.items()}
        return metrics, atomic_write_json(run.path / f"evaluate_{tag}.json", metrics)
    config_type = SegFinetuneConfig if loaded.task == "seg" else ClsFinetuneConfig
    config = load_config(config_type, run.config)
    samples, tag = select_samples(run, config, loaded.task, loaded.classes, data, split)
    if not samples:
        raise SonofmError(f"no images in split {split!r} of {data or config.data}")
    if loaded.task == "seg":
        values, rows = evaluate_segmentation(
            loaded.model, samples, loaded.img_size, loaded.classes, config.ignore_index,
            pixel_size_column(samples, config.pixel_size_column), precision=config.precision, progress=progress,
        )
        write_per_image_csv(rows, run.path / f"per_image_{tag}.csv")
    else:
        values = _evaluate_classifier(run, loaded, samples, tag, batch_size, progress)
    metrics = {f"{split}/{key}": value for key, value in values.items()}
    return metrics, atomic_write_json(run.path / f"evaluate_{tag}.json", metrics)


def _evaluate_classifier(run: RunFolder, loaded: RunModel, samples: list[Sample], tag: str, batch_size: int,
                         progress: bool) -> dict[str, float]:
    loader = DataLoader(ClassificationDataset(samples, loaded.img_size, train=False), batch_size=batch_size)
    probs, labels = [], []
    with torch.inference_mode():
        for images, batch_labels in progress_bar(loader, desc="evaluate", unit="batch", disable=not progress):
            probs.append(loaded.model(images).float().softmax(dim=1))
            labels.append(batch_labels)
    probs_all, labels_all = torch.cat(probs), torch.cat(labels)
    matrix = confusion_matrix(probs_all, labels_all, len(loaded.classes))
    plot_confusion_matrix(matrix, loaded.classes, run.path / f"confusion_matrix_{tag}.png", f"{tag} ({len(samples)} images)")
    return classification_metrics(probs_all, labels_all, loaded.classes)


def select_samples(run: RunFolder, config: TrainingConfig, task: str, classes: list[str], data: str | None,
                   split: str) -> tuple[list[Sample], str]:
    """The samples to evaluate and a tag naming them: the run's own ``split`` (from split.csv) without ``data``;
    else ``split`` of ``data`` when its layout has splits, or all of it."""
    num_classes = len(classes) if task in ("seg", "sam") else None
    layout_task = "cls" if task == "cls" else "seg"
    if data is None:
        index = load_index(config.data, task=layout_task, group_by=config.group_by, num_classes=num_classes)
        return load_split(run.split, index).get(split, []), split
    index = load_index(data, task=layout_task, num_classes=num_classes)
    if task == "cls" and index.classes != classes:
        raise SonofmError(f"classes of {data} {index.classes} differ from the run's {classes}")
    assert_valid(index)
    tag = f"{Path(data).name}_{split}" if index.has_splits else Path(data).name
    if index.has_splits:
        return [s for s in index.samples if s.split == split], tag
    return list(index.samples), tag
