"""``sonofm finetune cls``: fine-tune a backbone for image classification in a resumable run folder."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from torch.utils.data import DataLoader

from sonofm.data.datasets import ClassificationDataset
from sonofm.data.layouts import load_index
from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.sampling import SeededEpochSampler
from sonofm.data.splits import load_split, save_split, split_samples, train_fraction
from sonofm.data.validate import assert_valid
from sonofm.errors import SonofmError
from sonofm.metrics.classification import classification_metrics, confusion_matrix
from sonofm.models import create_backbone
from sonofm.models.classifier import ImageClassifier
from sonofm.runs.atomic import atomic_write_json, atomic_write_text
from sonofm.runs.config import save_config
from sonofm.runs.model_file import save_model
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.classification import ClassificationModule, inverse_frequency_weights
from sonofm.tasks.epoch_log import EpochCsvLog
from sonofm.tasks.figures import plot_confusion_matrix, plot_training_curves
from sonofm.tasks.optim import OptimConfig
from sonofm.tasks.precision import PRECISIONS, resolve_precision

Echo = Callable[[str], None]


@dataclass
class ClsFinetuneConfig:
    """Everything that defines a classification fine-tuning run (saved as the run's ``config.yaml``)."""

    data: str = ""
    model: str = "usfm_vit_base_patch16"
    model_args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    img_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    accumulate: int = 1
    train_fraction: float = 1.0
    mode: str = "full"
    seed: int = 0
    group_by: str | None = None
    split_ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    precision: str = "auto"
    label_smoothing: float = 0.1
    class_balance: str = "loss"
    drop_path: float = 0.1
    num_workers: int = 1
    accelerator: str = "auto"
    devices: str = "1"
    progress: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> None:
        """Raise SonofmError for values outside their range."""
        checks = [
            (bool(self.data), "--data is required"),
            (self.mode in ("full", "linear"), f"--mode must be full or linear, got {self.mode!r}"),
            (0 < self.train_fraction <= 1, f"--train-fraction must be in (0, 1], got {self.train_fraction}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.accumulate >= 1, f"accumulate must be >= 1, got {self.accumulate}"),
            (self.img_size >= 16 and self.img_size % 16 == 0, f"--img-size must be a multiple of 16, got {self.img_size}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.class_balance in ("loss", "none"), f"class_balance must be loss or none, got {self.class_balance!r}"),
            (len(self.split_ratios) == 3 and abs(sum(self.split_ratios) - 1) < 1e-6, "split_ratios must be 3 numbers summing to 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise SonofmError(message)


def finetune_classifier(config: ClsFinetuneConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                        callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Train, select the best epoch on validation balanced accuracy, test it, and write the run folder.

    Running again on an unfinished run folder resumes from ``checkpoints/last.ckpt``. ``callbacks`` are extra
    Lightning callbacks. Returns the final metrics.
    """
    config.validate()
    run, resuming = prepare_run(out, config, overwrite=overwrite)
    index = load_index(config.data, task="cls", group_by=config.group_by)
    assert_valid(index)
    splits = _load_or_make_splits(run, index, config, resuming)
    save_config(config, run.config)
    echo(_describe(index, splits, run, resuming))

    L.seed_everything(config.seed, workers=True, verbose=False)
    backbone = create_backbone(
        config.model, img_size=config.img_size, weights=config.weights, drop_path_rate=config.drop_path,
        **config.model_args,
    )
    if getattr(backbone, "load_report", None) is not None:
        echo(backbone.load_report.summary())
    # USFM's 0.001 head scale suits a pretrained encoder; from scratch it only prolongs the start-up plateau.
    model = ImageClassifier(backbone, num_classes=index.num_classes, head_init_scale=0.001 if config.weights else 1.0)
    weights = None
    if config.class_balance == "loss":
        weights = inverse_frequency_weights([s.label for s in splits["train"]], index.num_classes)
    optim = config.optim
    if optim.layer_decay is None:
        optim = dataclasses.replace(optim, layer_decay=0.65 if config.weights else 1.0)
    module = ClassificationModule(
        model, index.classes, optim, mode=config.mode, label_smoothing=config.label_smoothing,
        class_weights=weights, seed=config.seed,
    )
    loaders = {name: _loader(samples, config, train=(name == "train")) for name, samples in splits.items() if samples}
    has_val = "val" in loaders
    checkpoint = ModelCheckpoint(
        dirpath=run.checkpoints, filename="best", save_last=True, enable_version_counter=False,
        monitor="val/balanced_accuracy" if has_val else None, mode="max",
    )
    trainer = _trainer(config, [checkpoint, EpochCsvLog(run.log), *(callbacks or [])])
    trainer.fit(
        module, loaders["train"], loaders.get("val"),
        ckpt_path=str(run.last_checkpoint) if run.last_checkpoint.is_file() else None,
    )
    best = str(run.checkpoints / "best.ckpt") if has_val and (run.checkpoints / "best.ckpt").is_file() else None
    return _finish(run, config, index, module, trainer, loaders, best, echo)


def _finish(run: RunFolder, config: ClsFinetuneConfig, index: DatasetIndex, module: ClassificationModule,
            trainer: L.Trainer, loaders: dict[str, DataLoader], best: str | None, echo: Echo) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        if split not in loaders:
            continue
        run_eval = trainer.validate if split == "val" else trainer.test
        run_eval(module, loaders[split], ckpt_path=best, verbose=False)
        result = module.last_results[split]
        values = classification_metrics(result["probs"], result["labels"], index.classes)
        metrics.update({f"{split}/{key}": value for key, value in values.items()})
        matrix = confusion_matrix(result["probs"], result["labels"], index.num_classes)
        plot_confusion_matrix(matrix, index.classes, run.path / f"confusion_matrix_{split}.png", f"{split} ({len(result['labels'])} images)")
        _write_per_class(run.path / f"per_class_{split}.csv", values, index.classes)
    metrics["best_epoch"] = float(torch.load(best, map_location="cpu", weights_only=True)["epoch"]) if best else float(config.epochs - 1)
    save_model(module.model, run.model, model_metadata(config, index))
    if run.log.is_file():
        with run.log.open(newline="", encoding="utf-8") as handle:
            plot_training_curves(list(csv.DictReader(handle)), run.path / "training_curves.png")
    atomic_write_json(run.metrics, metrics)
    echo(format_metrics(metrics, run.path))
    return metrics


def model_metadata(config: ClsFinetuneConfig, index: DatasetIndex) -> dict:
    return {
        "task": "cls", "model": config.model, "model_args": config.model_args, "img_size": config.img_size,
        "classes": index.classes,
    }


def format_metrics(metrics: dict[str, float], run_path: Path) -> str:
    lines = [f"results in {run_path}:"]
    for key in ("val/balanced_accuracy", "test/accuracy", "test/balanced_accuracy", "test/macro_f1", "test/auroc"):
        if key in metrics:
            lines.append(f"  {key:24s} {metrics[key]:.4f}")
    lines.append(f"  metrics.json, confusion_matrix_test.png, per_class_test.csv, log.csv, model.safetensors")
    return "\n".join(lines)


def _load_or_make_splits(run: RunFolder, index: DatasetIndex, config: ClsFinetuneConfig, resuming: bool) -> dict[str, list[Sample]]:
    if resuming and run.split.is_file():
        return load_split(run.split, index)
    splits = split_samples(index, ratios=config.split_ratios, seed=config.seed)
    if config.train_fraction < 1:
        splits["train"] = train_fraction(splits["train"], config.train_fraction, seed=config.seed)
    if not splits.get("train"):
        raise SonofmError(f"no training images in {config.data}")
    save_split(splits, run.split)
    return splits


def _loader(samples: list[Sample], config: ClsFinetuneConfig, train: bool) -> DataLoader:
    dataset = ClassificationDataset(samples, config.img_size, train=train)
    return DataLoader(
        dataset, batch_size=config.batch_size, sampler=SeededEpochSampler(len(samples), config.seed) if train else None,
        drop_last=train and len(samples) > config.batch_size, num_workers=config.num_workers,
        pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(config.seed),
    )


def _trainer(config: ClsFinetuneConfig, callbacks: list[L.Callback]) -> L.Trainer:
    # Lightning's banners (hardware summary, logger tips) and a deprecation inside Lightning itself are noise here.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    if config.progress:
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=1)]
    devices: int | str = int(config.devices) if config.devices.isdigit() else config.devices
    return L.Trainer(
        max_epochs=config.epochs, accelerator=config.accelerator, devices=devices,
        precision=resolve_precision(config.precision, config.accelerator),
        accumulate_grad_batches=config.accumulate, gradient_clip_val=config.optim.grad_clip or None,
        callbacks=callbacks, logger=False, enable_progress_bar=config.progress, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=1,
    )


def _describe(index: DatasetIndex, splits: dict[str, list[Sample]], run: RunFolder, resuming: bool) -> str:
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in splits.items())
    verb = "resuming" if resuming else "starting"
    group = index.group_column or "none (each image its own group)"
    return f"{verb} {run.path}: {index.layout} layout, classes {index.classes}, groups by {group}; {counts}"


def _write_per_class(path: Path, metrics: dict[str, float], classes: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["class", "precision", "recall"])
    for name in classes:
        writer.writerow([name, f"{metrics[f'precision/{name}']:.4f}", f"{metrics[f'recall/{name}']:.4f}"])
    atomic_write_text(path, buffer.getvalue())
