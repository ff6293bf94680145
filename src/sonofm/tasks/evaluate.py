"""``sonofm evaluate``: metrics of a finished classification run on its own test split or on another dataset."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from sonofm.data.datasets import ClassificationDataset
from sonofm.data.layouts import load_index
from sonofm.data.records import Sample
from sonofm.data.splits import load_split
from sonofm.data.validate import assert_valid
from sonofm.errors import SonofmError
from sonofm.metrics.classification import classification_metrics, confusion_matrix
from sonofm.runs.atomic import atomic_write_json
from sonofm.runs.config import load_config
from sonofm.runs.run_folder import RunFolder
from sonofm.tasks.figures import plot_confusion_matrix
from sonofm.tasks.finetune_cls import ClsFinetuneConfig
from sonofm.tasks.run_model import load_run_model


def evaluate_run(run_path: str | Path, data: str | None = None, split: str = "test", batch_size: int = 32,
                 progress: bool = True) -> tuple[dict[str, float], Path]:
    """Evaluate ``run_path``'s model; return ``(metrics, json_path)``.

    Without ``data`` the run's own ``split.csv`` selects the images of ``split``. With ``data``, a layout that has
    splits is evaluated on ``split``; a layout without splits is evaluated whole. Class names must match the run's.
    """
    run = RunFolder(Path(run_path))
    loaded = load_run_model(run.path)
    config = load_config(ClsFinetuneConfig, run.config)
    samples, tag = _select_samples(run, config, data, split, loaded.classes)
    if not samples:
        raise SonofmError(f"no images in split {split!r} of {data or config.data}")
    loader = DataLoader(ClassificationDataset(samples, loaded.img_size, train=False), batch_size=batch_size)
    probs, labels = [], []
    with torch.inference_mode():
        for images, batch_labels in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
            probs.append(loaded.model(images).float().softmax(dim=1))
            labels.append(batch_labels)
    probs_all, labels_all = torch.cat(probs), torch.cat(labels)
    values = classification_metrics(probs_all, labels_all, loaded.classes)
    metrics = {f"{split}/{key}": value for key, value in values.items()}
    out = run.path / f"evaluate_{tag}.json"
    atomic_write_json(out, metrics)
    matrix = confusion_matrix(probs_all, labels_all, len(loaded.classes))
    plot_confusion_matrix(matrix, loaded.classes, run.path / f"confusion_matrix_{tag}.png", f"{tag} ({len(samples)} images)")
    return metrics, out


def _select_samples(run: RunFolder, config: ClsFinetuneConfig, data: str | None, split: str,
                    classes: list[str]) -> tuple[list[Sample], str]:
    if data is None:
        index = load_index(config.data, task="cls", group_by=config.group_by)
        return load_split(run.split, index).get(split, []), split
    index = load_index(data, task="cls")
    if index.classes != classes:
        raise SonofmError(f"classes of {data} {index.classes} differ from the run's {classes}")
    assert_valid(index)
    tag = f"{Path(data).name}_{split}" if index.has_splits else Path(data).name
    if index.has_splits:
        return [s for s in index.samples if s.split == split], tag
    return list(index.samples), tag
