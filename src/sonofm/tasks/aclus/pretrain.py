"""``sonofm pretrain aclus``: anatomy-level contrastive pretraining driven by anatomy-id maps."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from sonofm.atomic import atomic_write_json, atomic_write_text
from sonofm.data.anatomy_maps import AnatomyPairs, find_anatomy_pairs
from sonofm.engine.balance import balanced_sources
from sonofm.engine.config import PretrainingConfig
from sonofm.engine.data import make_loader, processes_on_this_machine
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.epoch_log import EpochCsvLog
from sonofm.engine.loggers import run_loggers
from sonofm.engine.trainer import Echo, fit_resuming, make_trainer
from sonofm.errors import SonofmError
from sonofm.methods.aclus.dataset import AclusDataset
from sonofm.methods.aclus.model import AclusConfig, AclusModel
from sonofm.models import save_backbone_weights
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.aclus.module import AclusModule, LarsConfig

ACLUS_MODELS = ("resnet18", "resnet50")


@dataclass
class AclusPretrainConfig(PretrainingConfig):
    """An ACLUS pretraining run (saved as ``config.yaml``): ``data`` image folders, ``masks`` their anatomy-map
    folders (one each) or one automask ``index.csv``."""

    masks: list[str] = field(default_factory=list)
    model: str = "resnet18"
    epochs: int = 300
    aclus: AclusConfig = field(default_factory=AclusConfig)
    optim: LarsConfig = field(default_factory=LarsConfig)

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (bool(self.masks), "--masks is required (mask folders or an automask index.csv)"),
            (self.model in ACLUS_MODELS, f"--model must be one of {', '.join(ACLUS_MODELS)}, got {self.model!r}"),
            (self.aclus.num_ids >= 1, f"aclus.num_ids must be >= 1, got {self.aclus.num_ids}"),
            (self.aclus.temperature > 0, f"aclus.temperature must be > 0, got {self.aclus.temperature}"),
            (self.aclus.core_size is None or (self.aclus.core_size >= 32 and self.aclus.core_size % 32 == 0),
             f"aclus.core_size must be a multiple of 32, got {self.aclus.core_size}"),
        ]


def pretrain_aclus(config: AclusPretrainConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                   callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Pretrain; export the online ResNet as ``model.safetensors`` (for ``sonofm finetune --weights``).

    Rerunning an unfinished run resumes it exactly. Returns the last epoch's mean losses, steps and image count.
    """
    config.validate()
    with rank_zero_first(config.accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        pairs = _load_or_find_pairs(run, config, resuming)
        L.seed_everything(config.seed, workers=True, verbose=False)
        model = AclusModel(config.model, config.img_size, config.aclus)
        if zero:
            save_config(config, run.config)
    global_batch = config.batch_size * config.accumulate * _world_size(config)
    echo(f"{'resuming' if resuming else 'starting'} {run.path}: ACLUS {config.model} at {config.img_size} px, "
         f"{len(pairs)} images with anatomy maps, global batch {global_batch}")
    module = AclusModule(model, config.optim, global_batch, seed=config.seed)
    dataset = AclusDataset(pairs, config.img_size, config.aclus.crop_scale,
                           config.aclus.resolved_core_size(config.img_size))
    sources, weights = balanced_sources(pairs.images, config, echo)
    loader = make_loader(dataset, config, train=True, sources=sources, source_weights=weights)
    checkpoint = ModelCheckpoint(dirpath=run.checkpoints, save_last=True, save_top_k=0, enable_version_counter=False,
                                 every_n_train_steps=config.checkpoint_every or None)
    trainer = make_trainer(config, [checkpoint, EpochCsvLog(run.log), *(callbacks or [])], run_loggers(config, run))
    fit_resuming(trainer, module, run, loader)
    if not trainer.is_global_zero:
        return {}
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.endswith("_epoch")}
    metrics |= {"steps": float(trainer.global_step), "images": float(len(pairs))}
    save_backbone_weights(model.backbone, run.model)
    atomic_write_json(run.metrics, metrics)
    echo(_format_result(metrics, run.path))
    return metrics


def _world_size(config: AclusPretrainConfig) -> int:
    return processes_on_this_machine(config) * config.num_nodes


def _load_or_find_pairs(run: RunFolder, config: AclusPretrainConfig, resuming: bool) -> AnatomyPairs:
    """The run's saved pairs when resuming, else a fresh search (saved as ``pairs.csv``; a packed folder's pairs
    follow from the pack and its map folder, and are not listed)."""
    listing = run.path / "pairs.csv"
    if resuming and listing.is_file():
        with listing.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return AnatomyPairs([Path(row["image"]) for row in rows], [Path(row["mask"]) for row in rows])
    pairs = find_anatomy_pairs(config.data, config.masks)
    if len(pairs) < 2:
        raise SonofmError(f"ACLUS needs at least 2 images with anatomy maps, found {len(pairs)}")
    if isinstance(pairs.masks, list):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", "mask"])
        writer.writerows((str(image), str(mask)) for image, mask in zip(pairs.images, pairs.masks))
        atomic_write_text(listing, buffer.getvalue())
    return pairs


def _format_result(metrics: dict[str, float], run_path: Path) -> str:
    lines = [f"results in {run_path}:"]
    for key in ("train/loss_epoch", "train/contrast_epoch", "train/context_epoch", "steps"):
        if key in metrics:
            lines.append(f"  {key:24s} {metrics[key]:.4f}")
    lines.append("  backbone: model.safetensors (sonofm finetune --model <same> --weights); log.csv, checkpoints/last.ckpt")
    return "\n".join(lines)
