"""``sonofm sam finetune`` and ``sonofm sam train-prompter``: the two A-SAM training stages as resumable runs.

Stage 1 (``finetune``) adapts SAM to ultrasound with prompts drawn from the masks: SAMUS's encoder parts (default),
or LoRA in the frozen image encoder with the mask decoder (or a fully tuned / frozen encoder). Stage 2
(``train-prompter``) freezes that model and trains a class-conditional prompter with the mask decoder, so one forward
gives every anatomy class without clicks.
Both write the run-folder contract: config.yaml, split.csv, log.csv, checkpoints, model.safetensors (only the
tensors that differ from the base SAM checkpoint), metrics.json, examples_val.png, training_curves.png, and for
stage 1 load_report.json (every base-checkpoint tensor loaded or resized, every new tensor).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from sonofm.atomic import atomic_write_json
from sonofm.data.datasets import SegmentationDataset
from sonofm.data.layouts import load_index
from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.sampling import ItemKey, item_generator
from sonofm.data.validate import assert_valid
from sonofm.data.workers import data_workers
from sonofm.engine.config import TrainingConfig
from sonofm.engine.data import describe_start, load_or_make_splits, make_loader
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.optim import OptimConfig
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.engine.trainer import Echo, checkpoint_epoch, fit_selecting_best, load_best_weights, write_training_curves
from sonofm.errors import SonofmError
from sonofm.runs.config import save_config
from sonofm.runs.model_file import read_model_metadata, save_tensors
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.sam.adapted import ADAPTERS, AdaptedSam, build_adapted_sam, load_adapted_sam
from sonofm.sam.prompts import check_prompt_kinds
from sonofm.sam.registry import PATCH_SIZE as SAM_PATCH_SIZE
from sonofm.sam.registry import SAM_TYPES, check_img_size
from sonofm.tasks.sam.evaluation import evaluate_sam, plot_sam_examples
from sonofm.tasks.sam.module import PromptSampling, SamLossConfig, SamModule
from sonofm.tasks.seg.evaluation import pixel_size_column, write_per_image_csv

EXAMPLE_IMAGES = 6


def _sam_optim() -> OptimConfig:
    return OptimConfig(lr=5e-4, weight_decay=0.0, layer_decay=1.0, warmup_epochs=1.0)


@dataclass
class SamTrainingConfig(TrainingConfig):
    """Options both A-SAM stages share: loss weights, classes, and cached image embeddings.

    ``cache_embeddings``: encode every training and validation image once (no augmentation) and train on the
    cached embeddings; only for a frozen encoder.
    """

    img_size: int = 256
    epochs: int = 20
    batch_size: int = 8
    bce_weight: float = 0.2
    dice_weight: float = 0.8
    pos_weight: float = 2.0
    num_classes: int | None = None
    ignore_index: int = 255
    pixel_size_column: str | None = None
    cache_embeddings: bool = False
    optim: OptimConfig = field(default_factory=_sam_optim)

    def img_size_check(self) -> tuple[bool, str]:
        return (self.img_size >= SAM_PATCH_SIZE and self.img_size % SAM_PATCH_SIZE == 0,
                f"--img-size must be a multiple of {SAM_PATCH_SIZE}, the patch size of SAM, got {self.img_size}")

    def loss(self) -> SamLossConfig:
        return SamLossConfig(self.bce_weight, self.dice_weight, self.pos_weight)


@dataclass
class SamFinetuneConfig(SamTrainingConfig):
    """Stage 1: ``sam_checkpoint`` (an official ``sam_vit_*.pth`` or any file in its format) at ``img_size``.

    ``prompts``: kinds drawn during training (one per step) and scored at evaluation; ``num_clicks`` positive clicks
    per point prompt; ``box_jitter``: each box edge moves by up to this fraction of the box side.
    ``adapter``: ``samus`` (SAMUS's encoder; 64, 128, 256 or 512 px), ``lora`` (rank ``lora_rank`` on every
    block's qkv, with the mask decoder), ``full`` or ``frozen``.
    """

    sam_checkpoint: str = ""
    sam_type: str = "vit_b"
    prompts: list[str] = field(default_factory=lambda: ["point", "box"])
    num_clicks: int = 1
    box_jitter: float = 0.1
    adapter: str = "samus"
    lora_rank: int = 4

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (bool(self.sam_checkpoint), "--sam-checkpoint is required"),
            (self.sam_type in SAM_TYPES, f"--sam-type must be one of {', '.join(SAM_TYPES)}, got {self.sam_type!r}"),
            (self.adapter in ADAPTERS, f"--adapter must be one of {', '.join(ADAPTERS)}, got {self.adapter!r}"),
            (not self.cache_embeddings or self.adapter == "frozen",
             "cache_embeddings needs --adapter frozen (a trained encoder changes its embeddings)"),
            (self.num_clicks >= 1, f"num_clicks must be >= 1, got {self.num_clicks}"),
            (self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}"),
        ]

    def sampling(self) -> PromptSampling:
        check_prompt_kinds(self.prompts)
        return PromptSampling(tuple(self.prompts), self.num_clicks, self.box_jitter)


@dataclass
class PrompterConfig(SamTrainingConfig):
    """Stage 2: a prompter on the A-SAM of run ``run`` (whose input size it takes); embeddings cached by default."""

    run: str = ""
    tokens_per_class: int = 2
    depth: int = 4
    epochs: int = 30
    cache_embeddings: bool = True

    def checks(self) -> list[tuple[bool, str]]:
        return [*super().checks(), (bool(self.run), "--run is required"),
                (self.tokens_per_class >= 1 and self.depth >= 1, "tokens_per_class and depth must be >= 1")]


def finetune_sam(config: SamFinetuneConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                 callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Stage 1: adapt SAM with prompts from the masks; evaluate prompted Dice/IoU/HD95 on val and test."""
    config.validate()
    sampling = config.sampling()
    index = _load_data(config)
    L.seed_everything(config.seed, workers=True, verbose=False)  # LoRA initialisation
    check_img_size(config.img_size, samus=config.adapter == "samus")
    model = build_adapted_sam(Path(config.sam_checkpoint).resolve(), config.sam_type, config.img_size,
                              index.classes, config.adapter, config.lora_rank)
    echo(model.sam.load_report.summary())
    module = SamModule(model, "adapt", config.optim, config.loss(), sampling, config.ignore_index,
                       cached=config.cache_embeddings, seed=config.seed)
    extra = {"sam_checkpoint": str(Path(config.sam_checkpoint).resolve()), "sam_type": config.sam_type,
             "prompts": config.prompts}
    return _train(config, out, overwrite, index, module, "prompt", extra, echo, callbacks)


def train_prompter(config: PrompterConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                   callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Stage 2: train the class prompter + mask decoder of a finished A-SAM run; evaluate automatic anatomy maps."""
    if not config.run:
        raise SonofmError("--run is required (a finished `sonofm sam finetune` run)")
    base_run = RunFolder(Path(config.run))
    base_run.require_finished()
    base_meta = read_model_metadata(base_run.model)
    if base_meta.get("task") != "sam" or "prompter" in base_meta:
        raise SonofmError(f"--run {base_run.path} is not an A-SAM run from `sonofm sam finetune`")
    config.img_size = base_meta["img_size"]
    config.validate()
    index = _load_data(config)
    if len(index.classes) != len(base_meta["classes"]):
        raise SonofmError(f"{config.data} has {len(index.classes)} mask classes, the A-SAM run "
                          f"{base_run.path} has {len(base_meta['classes'])}")
    model = load_adapted_sam(base_run.model)
    model.classes = index.classes
    L.seed_everything(config.seed, workers=True, verbose=False)  # prompter initialisation
    model.add_prompter(config.tokens_per_class, config.depth)
    module = SamModule(model, "prompter", config.optim, config.loss(), PromptSampling(), config.ignore_index,
                       cached=config.cache_embeddings, seed=config.seed)
    extra = {"sam_checkpoint": base_meta["sam_checkpoint"], "sam_type": base_meta["sam_type"],
             "prompts": base_meta["prompts"], "base_run": str(base_run.path.resolve())}
    return _train(config, out, overwrite, index, module, "auto", extra, echo, callbacks)


def _load_data(config: SamTrainingConfig) -> DatasetIndex:
    index = load_index(config.data, task="seg", group_by=config.group_by, num_classes=config.num_classes)
    assert_valid(index)
    return index


def _train(config: SamTrainingConfig, out: str | Path, overwrite: bool, index: DatasetIndex, module: SamModule,
           mode: str, extra_metadata: dict, echo: Echo, callbacks: list[L.Callback] | None) -> dict[str, float]:
    with rank_zero_first(config.accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        pixel_column = pixel_size_column(index.samples, config.pixel_size_column)
        splits = load_or_make_splits(run, index, config, resuming)
        if zero:
            save_config(config, run.config)
            if mode == "prompt":  # stage 1: what the base checkpoint gave, tensor by tensor
                atomic_write_json(run.path / "load_report.json", dataclasses.asdict(module.model.sam.load_report))
    echo(describe_start(index, splits, run, resuming))
    trainable = sum(param.numel() for param in module.model.parameters() if param.requires_grad)
    echo(f"training {trainable / 1e6:.2f} M of {sum(p.numel() for p in module.model.parameters()) / 1e6:.1f} M "
         f"parameters ({'cached embeddings' if config.cache_embeddings else 'images'})")
    loaders = {
        name: _loader(module.model, samples, config, train=(name == "train"))
        for name, samples in splits.items() if samples and name != "test"
    }
    trainer, best = fit_selecting_best(config, run, module, loaders, "val/dice", callbacks)
    if not trainer.is_global_zero:
        return {}
    load_best_weights(module, best)
    model: AdaptedSam = module.model.eval()
    kinds = list(extra_metadata["prompts"])
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        if splits.get(split):
            values, rows = evaluate_sam(model, splits[split], mode, kinds, config.ignore_index, pixel_column,
                                        config.precision, config.progress, desc=f"evaluate {split}")
            metrics.update({f"{split}/{key}": value for key, value in values.items()})
            for tag, tag_rows in rows.items():
                write_per_image_csv(tag_rows, run.path / f"per_image_{split}_{tag}.csv")
    shown = splits.get("val") or splits["train"]
    shown = shown[:: max(1, len(shown) // EXAMPLE_IMAGES)][:EXAMPLE_IMAGES]
    plot_sam_examples(model, shown, mode, kinds[0], run.path / "examples_val.png",
                      f"{'validation' if splits.get('val') else 'training'} images, "
                      f"{'automatic' if mode == 'auto' else kinds[0] + ' prompts'}", config.precision)
    metrics["best_epoch"] = checkpoint_epoch(best, config.epochs)
    save_tensors(model.adapted_state_dict(), run.model, {**model.metadata(), **extra_metadata})
    write_training_curves(run, ("val/dice",))
    atomic_write_json(run.metrics, metrics)
    echo(_format_metrics(metrics, run.path))
    return metrics


def _loader(model: AdaptedSam, samples: list[Sample], config: SamTrainingConfig, train: bool) -> DataLoader:
    """Images and masks (augmented for training), or cached embeddings and masks when ``cache_embeddings``."""
    if not config.cache_embeddings:
        return make_loader(SegmentationDataset(samples, config.img_size, train=train), config, train=train)
    cached = _embed_dataset(model, SegmentationDataset(samples, config.img_size, train=False), config)
    return make_loader(cached, dataclasses.replace(config, num_workers=0), train=train)


class _EmbeddingDataset(Dataset):
    """``(embedding (C, h, w), mask (S, S))`` pairs held in memory, served by position or sampler key."""

    def __init__(self, embeddings: torch.Tensor, masks: torch.Tensor) -> None:
        self.embeddings, self.masks = embeddings, masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, key: ItemKey) -> tuple[torch.Tensor, torch.Tensor]:
        position, _ = item_generator(key)
        return self.embeddings[position], self.masks[position]


def _embed_dataset(model: AdaptedSam, dataset: SegmentationDataset, config: SamTrainingConfig) -> _EmbeddingDataset:
    """Encode every image once (the frozen encoder): ``(embedding (C, h, w), mask (S, S))`` pairs."""
    device = inference_device(config.accelerator)
    encoder = model.sam.image_encoder
    was_training = encoder.training
    encoder.to(device).eval()
    embeddings, masks = [], []
    loader = DataLoader(dataset, batch_size=config.batch_size, num_workers=data_workers(config.num_workers))
    with torch.inference_mode():
        for images, batch_masks in loader:
            with autocast_for(device, config.precision):
                embeddings.append(encoder(images.to(device)).float().cpu())
            masks.append(batch_masks)
    encoder.cpu().train(was_training)
    return _EmbeddingDataset(torch.cat(embeddings), torch.cat(masks))


def _format_metrics(metrics: dict[str, float], run_path: Path) -> str:
    lines = [f"results in {run_path}:"]
    for key, value in metrics.items():
        if key.endswith(("/dice", "/iou", "/hd95", "/hd95_mm")) and key.count("/") == 2:
            lines.append(f"  {key:24s} {value:.4f}")
    lines.append("  metrics.json, per_image_*.csv, examples_val.png, training_curves.png, log.csv, model.safetensors")
    return "\n".join(lines)
