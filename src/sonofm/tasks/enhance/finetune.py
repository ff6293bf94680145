"""``sonofm finetune enhance``: train a ViT + reconstruction decoder to restore synthetically degraded images."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from sonofm.atomic import atomic_write, atomic_write_json
from sonofm.data.degradations import DegradationConfig
from sonofm.data.layouts import load_index
from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.splits import load_split
from sonofm.data.unlabeled import scan_image_folders
from sonofm.data.workers import data_workers
from sonofm.engine.config import FinetuneConfig
from sonofm.engine.data import describe_start, load_or_make_splits, make_loader
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.trainer import Echo, checkpoint_epoch, fit_selecting_best, load_best_weights, write_training_curves
from sonofm.errors import SonofmError
from sonofm.metrics.enhancement import enhancement_metrics
from sonofm.models import create_backbone
from sonofm.models.enhancer import ImageEnhancer
from sonofm.report.figures import plt, save_figure
from sonofm.runs.config import save_config
from sonofm.runs.model_file import save_model
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.enhance.module import METRICS, EnhancementDataset, EnhancementModule

CURVE_METRICS = ("val/psnr", "val/psnr_fan", "val/ssim", "val/ssim_fan")
EXAMPLE_IMAGES = 6


@dataclass
class EnhanceFinetuneConfig(FinetuneConfig):
    """An enhancement run (saved as ``config.yaml``): ``degradation`` says what the model learns to undo.

    ``loss_in_fan`` restricts the L1 (and SSIM) loss to the detected fan of the clean image; ``ssim_weight`` adds
    ``weight * (1 - SSIM)``; ``refine_channels`` is the width of the refinement convs on the input skip.
    """

    model: str = "usfm_vit_base_patch16"
    batch_size: int = 8
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    loss_in_fan: bool = True
    ssim_weight: float = 0.0
    refine_channels: int = 32

    def checks(self) -> list[tuple[bool, str]]:
        return [*super().checks(), *self.degradation.checks(),
                (self.ssim_weight >= 0, f"ssim_weight must be >= 0, got {self.ssim_weight}"),
                (self.refine_channels >= 1, f"refine_channels must be >= 1, got {self.refine_channels}")]


def load_images_index(config: EnhanceFinetuneConfig) -> DatasetIndex:
    """The dataset as a layout reader sees it (its groups and splits), else every image under ``config.data``,
    each its own group (labels are not needed)."""
    try:
        return load_index(config.data, group_by=config.group_by)
    except SonofmError:
        if not Path(config.data).is_dir():
            raise
    pool = scan_image_folders([config.data])
    samples = [Sample(image=path) for path in pool.files]
    return DatasetIndex(root=Path(config.data), layout="images", task="enhance", samples=samples, classes=[])


def build_enhancer(config: EnhanceFinetuneConfig, weights: str | None = None) -> ImageEnhancer:
    backbone = create_backbone(config.model, img_size=config.img_size, weights=weights,
                               drop_path_rate=config.drop_path, **config.model_args)
    return ImageEnhancer(backbone, refine_channels=config.refine_channels)


def finetune_enhancer(config: EnhanceFinetuneConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                      callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Train, keep the best epoch by validation PSNR, evaluate val and test against the degraded input, write the
    run. Running again on an unfinished run folder resumes from ``checkpoints/last.ckpt``. Returns the metrics."""
    config.validate()
    with rank_zero_first(config.accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        index = load_images_index(config)
        L.seed_everything(config.seed, workers=True, verbose=False)
        model = build_enhancer(config, config.weights)
        splits = load_or_make_splits(run, index, config, resuming)
        if zero:
            save_config(config, run.config)
    echo(describe_start(index, splits, run, resuming))
    if getattr(model.backbone, "load_report", None) is not None:
        echo(model.backbone.load_report.summary())
    module = EnhancementModule(model, config.resolved_optim(), seed=config.seed, loss_in_fan=config.loss_in_fan,
                               ssim_weight=config.ssim_weight)
    loaders = {
        name: make_loader(EnhancementDataset(samples, config.img_size, config.degradation, name == "train",
                                             config.seed), config, train=(name == "train"))
        for name, samples in splits.items() if samples and name != "test"
    }
    trainer, best = fit_selecting_best(config, run, module, loaders, "val/psnr", callbacks)
    if not trainer.is_global_zero:
        return {}
    load_best_weights(module, best)
    return _finish(run, config, splits, module.model.eval(), best, echo)


@torch.no_grad()
def evaluate_enhancement(model: ImageEnhancer, samples: list[Sample], config: EnhanceFinetuneConfig
                         ) -> tuple[dict[str, float], list[dict], tuple[torch.Tensor, ...]]:
    """Metrics of the restored and the degraded images (``<metric>`` and ``<metric>_degraded``), per-image rows,
    and the first :data:`EXAMPLE_IMAGES` ``(degraded, restored, clean)`` for the figure."""
    dataset = EnhancementDataset(samples, config.img_size, config.degradation, train=False, seed=config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, num_workers=data_workers(config.num_workers))
    device = next(model.parameters()).device
    per_image: dict[str, list[torch.Tensor]] = {}
    shown: list[tuple[torch.Tensor, ...]] = []
    for degraded, clean, fan in loader:
        restored = model(degraded.to(device)).float().clamp(0, 1).cpu()
        for suffix, images in (("", restored), ("_degraded", degraded)):
            for key, values in enhancement_metrics(images, clean, fan).items():
                per_image.setdefault(key + suffix, []).append(values)
        if sum(len(part[0]) for part in shown) < EXAMPLE_IMAGES:
            shown.append((degraded, restored, clean))
    columns = {key: torch.cat(parts) for key, parts in per_image.items()}
    metrics = {key: float(values[torch.isfinite(values)].mean()) for key, values in columns.items()}
    rows = [{"image": str(sample.image), **{key: float(values[i]) for key, values in columns.items()}}
            for i, sample in enumerate(samples)]
    examples = tuple(torch.cat([part[j] for part in shown])[:EXAMPLE_IMAGES] for j in range(3))
    return metrics, rows, examples


def plot_enhancement_examples(degraded: torch.Tensor, restored: torch.Tensor, clean: torch.Tensor, path: Path,
                              title: str) -> Path:
    """Rows degraded / restored / original of ``(N, 3, H, W)`` images in [0, 1]."""
    count = len(clean)
    figure, axes = plt.subplots(3, count, figsize=(2 * count, 6.3), squeeze=False)
    for row, (name, images) in enumerate((("degraded", degraded), ("restored", restored), ("original", clean))):
        for column in range(count):
            axis = axes[row][column]
            axis.imshow(images[column].permute(1, 2, 0).clamp(0, 1).numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(name)
    figure.suptitle(title)
    return save_figure(figure, path)


def _finish(run: RunFolder, config: EnhanceFinetuneConfig, splits: dict[str, list[Sample]], model: ImageEnhancer,
            best: str | None, echo: Echo) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        samples = splits.get(split) or []
        if not samples:
            continue
        values, rows, examples = evaluate_enhancement(model, samples, config)
        metrics.update({f"{split}/{key}": value for key, value in values.items()})
        _write_rows(rows, run.path / f"per_image_{split}.csv")
        if split == "test" or not splits.get("test"):
            plot_enhancement_examples(*examples, run.path / f"examples_{split}.png",
                                      f"{split} images, {config.degradation.kind} degradation")
    metrics["best_epoch"] = checkpoint_epoch(best, config.epochs)
    save_model(model, run.model, model_metadata(config))
    write_training_curves(run, CURVE_METRICS)
    atomic_write_json(run.metrics, metrics)
    echo(format_metrics(metrics, run.path))
    return metrics


def _write_rows(rows: list[dict], path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def model_metadata(config: EnhanceFinetuneConfig) -> dict:
    degradation = config.degradation
    return {
        "task": "enhance", "model": config.model, "model_args": config.model_args, "img_size": config.img_size,
        "classes": [], "refine_channels": config.refine_channels,
        "degradation": {"kind": degradation.kind, "scale": degradation.scale,
                        "speckle_strength": list(degradation.speckle_strength),
                        "blur_sigma": list(degradation.blur_sigma),
                        "compose_probability": degradation.compose_probability},
    }


def format_metrics(metrics: dict[str, float], run_path: Path) -> str:
    lines = [f"results in {run_path}:"]
    for key in (*(f"test/{m}" for m in METRICS), *(f"test/{m}_degraded" for m in METRICS)):
        if key in metrics:
            lines.append(f"  {key:24s} {metrics[key]:.4f}")
    lines.append("  metrics.json, per_image_test.csv, examples_test.png, training_curves.png, log.csv, model.safetensors")
    return "\n".join(lines)


def evaluate_enhancement_run(run: RunFolder, model: ImageEnhancer, config: EnhanceFinetuneConfig, data: str | None,
                             split: str) -> tuple[dict[str, float], str]:
    """Metrics of a finished run's ``model`` on its own ``split`` (from ``split.csv``), or on ``data`` (its
    ``split`` when the layout has splits, else all of it); writes ``per_image_<tag>.csv`` and ``examples_<tag>.png``.
    Returns ``(metrics, tag)``."""
    if data is None:
        samples, tag = load_split(run.split, load_images_index(config)).get(split, []), split
    else:
        index = load_images_index(replace(config, data=data))
        tag = f"{Path(data).name}_{split}" if index.has_splits else Path(data).name
        samples = [s for s in index.samples if s.split == split] if index.has_splits else list(index.samples)
    if not samples:
        raise SonofmError(f"no images in split {split!r} of {data or config.data}")
    values, rows, examples = evaluate_enhancement(model.eval(), samples, config)
    _write_rows(rows, run.path / f"per_image_{tag}.csv")
    plot_enhancement_examples(*examples, run.path / f"examples_{tag}.png",
                              f"{tag} images, {config.degradation.kind} degradation")
    return values, tag
