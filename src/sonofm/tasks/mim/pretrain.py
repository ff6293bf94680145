"""``sonofm pretrain mim``: USFM-style spatial-frequency masked image modelling on folders of unlabeled images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from sonofm.atomic import atomic_write_json, atomic_write_text
from sonofm.data.packed import PackedImages, packed_data
from sonofm.data.unlabeled import ImagePool, PretrainImageDataset, scan_image_folders
from sonofm.engine.balance import balanced_sources
from sonofm.engine.config import PretrainingConfig
from sonofm.engine.data import make_loader
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.epoch_log import EpochCsvLog
from sonofm.engine.loggers import run_loggers
from sonofm.engine.module import MidEpochResume
from sonofm.engine.optim import OptimConfig
from sonofm.engine.trainer import Echo, fit_resuming, make_trainer, trained_model
from sonofm.errors import SonofmError
from sonofm.methods.mim.model import MaskedImageModel, MimConfig
from sonofm.models import create_backbone, patch_size_of, save_backbone_weights
from sonofm.models.usfm_export import export_usfm_checkpoint
from sonofm.models.usfm_vit import UsfmViT
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.mim.module import MimModule, ReconstructionFigures

OFFICIAL_EXPORT = "encoder_usfm_layout.pth"
FIGURE_DIR = "reconstructions"


def _pretrain_optim() -> OptimConfig:
    """SimMIM-like defaults: no layer decay, a 1-epoch warmup then cosine to 1 % of the peak."""
    return OptimConfig(lr=2e-4, weight_decay=0.05, layer_decay=1.0, warmup_epochs=1.0, min_lr_ratio=0.01)


@dataclass
class MimPretrainConfig(PretrainingConfig):
    """Everything that defines a MIM pretraining run (saved as ``config.yaml``).

    ``model_args`` go to the backbone; USFM ViTs default to one relative position table shared by all blocks
    (``shared_rel_pos_bias``), as USFM's released weights have, so the export in the official layout is exact.
    ``figure_every`` is in optimiser steps (0: only at the end).
    """

    model: str = "usfm_vit_base_patch16"
    model_args: dict[str, Any] = field(default_factory=dict)
    drop_path: float = 0.1
    figure_every: int = 500
    figure_images: int = 6
    shards_models: ClassVar[bool] = True
    mim: MimConfig = field(default_factory=MimConfig)
    optim: OptimConfig = field(default_factory=_pretrain_optim)

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.figure_every >= 0, "figure_every must be >= 0"),
            (self.figure_images >= 1, f"figure_images must be >= 1, got {self.figure_images}"),
            *self.mim.checks(self.img_size, patch_size_of(self.model)),
        ]


def build_mim_model(config: MimPretrainConfig) -> MaskedImageModel:
    """The encoder (USFM ViTs with a shared relative position table unless ``model_args`` say otherwise) + decoder."""
    model_args = dict(config.model_args)
    if config.model.startswith("usfm_vit"):
        model_args.setdefault("shared_rel_pos_bias", True)
    encoder = create_backbone(config.model, img_size=config.img_size, drop_path_rate=config.drop_path, **model_args)
    return MaskedImageModel(encoder, config.mim)


def pretrain_mim(config: MimPretrainConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                 callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Pretrain, write figures, checkpoints and the encoder exports; rerunning an unfinished run resumes it.

    Returns the final metrics (mean losses of the last epoch, steps, images seen).
    """
    config.validate()
    with rank_zero_first(config.accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        files = _load_or_scan_images(run, config, resuming, echo)
        L.seed_everything(config.seed, workers=True, verbose=False)
        model = build_mim_model(config)
        if zero:
            save_config(config, run.config)
    echo(f"{'resuming' if resuming else 'starting'} {run.path}: {config.model} at {config.img_size} px, "
         f"{len(files)} images, batch {config.batch_size} x {config.accumulate} accumulated")

    module = MimModule(model, config.optim, seed=config.seed)
    sources, weights = balanced_sources(files, config, echo)
    loader = make_loader(PretrainImageDataset(files, config.img_size, train=True), config, train=True,
                         sources=sources, source_weights=weights)
    shown = PretrainImageDataset(files, config.img_size, train=False,
                                 positions=range(0, len(files), max(1, len(files) // config.figure_images))[
                                     : config.figure_images])
    figures = ReconstructionFigures(torch.stack([shown[i] for i in range(len(shown))]), run.path / FIGURE_DIR,
                                    config.figure_every, seed=config.seed)
    checkpoint = ModelCheckpoint(dirpath=run.checkpoints, save_last=True, save_top_k=0, enable_version_counter=False,
                                 every_n_train_steps=config.checkpoint_every or None)
    trainer = make_trainer(config, [checkpoint, figures, EpochCsvLog(run.log),
                                    MidEpochResume(loader.sampler, config.batch_size), *(callbacks or [])],
                           run_loggers(config, run))
    fit_resuming(trainer, module, run, loader)
    trained = trained_model(trainer, model, lambda: build_mim_model(config))
    if trained is None:  # not rank 0
        return {}
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.endswith("_epoch")}
    metrics |= {"steps": float(trainer.global_step), "images": float(len(files))}
    _export(run, trained)
    atomic_write_json(run.metrics, metrics)
    echo(format_pretrain_result(metrics, run.path, isinstance(model.encoder, UsfmViT)))
    return metrics


def _load_or_scan_images(run: RunFolder, config: MimPretrainConfig, resuming: bool, echo: Echo
                         ) -> list[Path] | PackedImages:
    """A packed folder's images (``sonofm data pack``: nothing to scan), the run's saved image list when resuming
    (so added files do not change it), else a fresh scan."""
    packed = packed_data(config.data)
    if packed is not None:
        echo(f"{len(packed)} images packed in {config.data[0]} ({len(packed.source_names)} sources)")
        return packed
    listing = run.path / "images.txt"
    if resuming and listing.is_file():
        return [Path(line) for line in listing.read_text(encoding="utf-8").splitlines() if line]
    pool: ImagePool = scan_image_folders(config.data, progress=config.progress)
    echo(pool.summary())
    if not pool.files:
        raise SonofmError(f"no usable images in {', '.join(config.data)}")
    atomic_write_text(listing, "".join(f"{path}\n" for path in pool.files))
    return pool.files


def _export(run: RunFolder, model: MaskedImageModel) -> None:
    """``model.safetensors`` (loads with ``finetune --weights``) and, for USFM ViTs, the official flat layout."""
    save_backbone_weights(model.encoder, run.model)
    if isinstance(model.encoder, UsfmViT):
        export_usfm_checkpoint(model.encoder, run.path / OFFICIAL_EXPORT)


def format_pretrain_result(metrics: dict[str, float], run_path: Path, official: bool) -> str:
    lines = [f"results in {run_path}:"]
    for key in ("train/loss_epoch", "train/loss_spatial_epoch", "train/loss_frequency_epoch", "steps"):
        if key in metrics:
            lines.append(f"  {key:28s} {metrics[key]:.4f}")
    exports = "model.safetensors (sonofm finetune --weights)" + (f", {OFFICIAL_EXPORT} (USFM layout)" if official else "")
    lines.append(f"  encoder: {exports}; figures in {FIGURE_DIR}/, log.csv, checkpoints/last.ckpt")
    return "\n".join(lines)

