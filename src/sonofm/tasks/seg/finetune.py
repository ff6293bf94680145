"""``sonofm finetune seg``: fine-tune a backbone + segmentation head in a resumable run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from sonofm.atomic import atomic_write_json
from sonofm.data.datasets import SegmentationDataset
from sonofm.data.layouts import load_index
from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.validate import assert_valid
from sonofm.engine.config import FinetuneConfig
from sonofm.engine.data import describe_start, load_or_make_splits, make_loader
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.trainer import Echo, checkpoint_epoch, fit_selecting_best, load_best_weights, write_training_curves
from sonofm.models import create_backbone
from sonofm.models.segmenter import SEG_HEADS, Segmenter
from sonofm.runs.config import save_config
from sonofm.runs.model_file import save_model
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.seg.evaluation import evaluate_segmentation, pixel_size_column, plot_examples, write_per_image_csv
from sonofm.tasks.seg.module import SegmentationModule

CURVE_METRICS = ("val/dice", "val/iou", "val/pixel_accuracy")
EXAMPLE_IMAGES = 6


@dataclass
class SegFinetuneConfig(FinetuneConfig):
    """Everything that defines a segmentation fine-tuning run (saved as the run's ``config.yaml``).

    ``num_classes`` counts mask classes including background (None: inferred from the masks). ``head_args`` go to
    the head (e.g. ``channels`` for upernet, ``dim`` / ``num_layers`` / loss weights for segvit).
    ``pixel_size_column`` names the labels.csv column with each image's pixel size in mm (for ``hd95_mm``); None
    looks for pixel_size_mm, pixel_size_mm_resized, pixel_size.
    """

    batch_size: int = 8
    head: str = "upernet"
    head_args: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    ignore_index: int = 255
    aux_weight: float = 0.4
    pixel_size_column: str | None = None

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.head in SEG_HEADS, f"--head must be one of {', '.join(SEG_HEADS)}, got {self.head!r}"),
            (self.num_classes is None or self.num_classes >= 2, f"--num-classes must be >= 2, got {self.num_classes}"),
            (self.ignore_index < 0 or self.ignore_index >= (self.num_classes or 2),
             f"ignore_index {self.ignore_index} collides with a class id"),
        ]


def build_segmenter(config: SegFinetuneConfig, num_classes: int, weights: str | None = None) -> Segmenter:
    """Backbone (with ``weights`` if given) + the configured head."""
    backbone = create_backbone(
        config.model, img_size=config.img_size, weights=weights, drop_path_rate=config.drop_path, **config.model_args,
    )
    return Segmenter(backbone, num_classes, head=config.head, ignore_index=config.ignore_index,
                     aux_weight=config.aux_weight, **config.head_args)


def finetune_segmenter(config: SegFinetuneConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                       callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Train, select the best epoch on validation Dice, evaluate val and test at full resolution, write the run.

    Running again on an unfinished run folder resumes from ``checkpoints/last.ckpt``. Returns the final metrics.
    """
    config.validate()
    with rank_zero_first(config.accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        index = load_index(config.data, task="seg", group_by=config.group_by, num_classes=config.num_classes)
        assert_valid(index)
        pixel_column = pixel_size_column(index.samples, config.pixel_size_column)
        L.seed_everything(config.seed, workers=True, verbose=False)
        model = build_segmenter(config, index.num_classes, config.weights)  # before any write: bad options leave no run
        splits = load_or_make_splits(run, index, config, resuming)
        if zero:
            save_config(config, run.config)
    echo(describe_start(index, splits, run, resuming))
    if getattr(model.backbone, "load_report", None) is not None:
        echo(model.backbone.load_report.summary())
    module = SegmentationModule(model, index.classes, config.resolved_optim(), seed=config.seed)
    loaders = {
        name: make_loader(SegmentationDataset(samples, config.img_size, train=(name == "train")), config,
                          train=(name == "train"))
        for name, samples in splits.items() if samples and name != "test"
    }
    trainer, best = fit_selecting_best(config, run, module, loaders, "val/dice", callbacks)
    if not trainer.is_global_zero:
        return {}
    load_best_weights(module, best)
    return _finish(run, config, index, splits, module.model, best, pixel_column, echo)


def _finish(run: RunFolder, config: SegFinetuneConfig, index: DatasetIndex, splits: dict[str, list[Sample]],
            model: Segmenter, best: str | None, pixel_column: str | None, echo: Echo) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        samples = splits.get(split) or []
        if not samples:
            continue
        values, rows = evaluate_segmentation(
            model, samples, config.img_size, index.classes, config.ignore_index, pixel_column,
            precision=config.precision, progress=config.progress, desc=f"evaluate {split}",
        )
        metrics.update({f"{split}/{key}": value for key, value in values.items()})
        write_per_image_csv(rows, run.path / f"per_image_{split}.csv")
    shown = splits.get("val") or splits["train"]
    shown = shown[:: max(1, len(shown) // EXAMPLE_IMAGES)][:EXAMPLE_IMAGES]  # spread over groups, not one video
    plot_examples(model, shown, config.img_size, index.classes, run.path / "examples_val.png",
                  f"{'validation' if splits.get('val') else 'training'} images", precision=config.precision)
    metrics["best_epoch"] = checkpoint_epoch(best, config.epochs)
    save_model(model, run.model, model_metadata(config, index))
    write_training_curves(run, CURVE_METRICS)
    atomic_write_json(run.metrics, metrics)
    echo(format_metrics(metrics, run.path))
    return metrics


def model_metadata(config: SegFinetuneConfig, index: DatasetIndex) -> dict:
    return {
        "task": "seg", "model": config.model, "model_args": config.model_args, "img_size": config.img_size,
        "classes": index.classes, "head": config.head, "head_args": config.head_args,
        "ignore_index": config.ignore_index, "aux_weight": config.aux_weight,
    }


def format_metrics(metrics: dict[str, float], run_path: Path) -> str:
    lines = [f"results in {run_path}:"]
    for key in ("val/dice", "test/dice", "test/iou", "test/hd95", "test/hd95_mm", "test/pixel_accuracy"):
        if key in metrics:
            lines.append(f"  {key:24s} {metrics[key]:.4f}")
    lines.append("  metrics.json, per_image_test.csv, examples_val.png, training_curves.png, log.csv, model.safetensors")
    return "\n".join(lines)
