"""``sonofm finetune cls|seg|enhance``: flags -> a task config -> the task's fine-tuning function."""

from __future__ import annotations

import argparse
from typing import TypeVar

from sonofm.cli.options import HARDWARE_FLAGS, add_hardware_flags, add_output_flags, config_from_args

T = TypeVar("T")

# Flag name -> config field, for flags whose value is copied into the config when given (``--lr`` sets optim.lr).
COMMON_FLAGS = {
    "data": "data", "model": "model", "weights": "weights", "img_size": "img_size", "epochs": "epochs",
    "batch_size": "batch_size", "accumulate": "accumulate", "train_fraction": "train_fraction", "seed": "seed",
    "group_by": "group_by", "lr": "optim.lr", **HARDWARE_FLAGS,
}
CLS_FLAGS = {**COMMON_FLAGS, "mode": "mode"}
SEG_FLAGS = {**COMMON_FLAGS, "head": "head", "num_classes": "num_classes", "ignore_index": "ignore_index"}
ENHANCE_FLAGS = {**COMMON_FLAGS, "degradation": "degradation.kind", "scale": "degradation.scale"}


def register(subparsers: argparse._SubParsersAction) -> None:
    finetune = subparsers.add_parser("finetune", help="fine-tune a backbone on a labelled dataset")
    tasks = finetune.add_subparsers(dest="task", required=True, metavar="TASK")
    cls = tasks.add_parser(
        "cls", help="image classification",
        description="Fine-tune for classification. Rerunning the same command resumes an unfinished run.",
    )
    add_cls_flags(cls)
    cls.set_defaults(handler=run_finetune_cls)

    seg = tasks.add_parser(
        "seg", help="semantic segmentation",
        description="Fine-tune a backbone + segmentation head. Rerunning the same command resumes an unfinished run.",
    )
    _add_common_flags(seg, "dataset folder with images and masks (flat, USFM or SAMUS layout)", default_batch=8)
    seg.add_argument("--head", choices=["upernet", "segvit", "linear", "unet"],
                     help="decode head (default upernet; unet needs a ResNet backbone)")
    seg.add_argument("--num-classes", type=int, help="mask classes including background (default: from the masks)")
    seg.add_argument("--ignore-index", type=int, help="mask value left out of loss and metrics (default 255)")
    seg.set_defaults(handler=run_finetune_seg)

    enhance = tasks.add_parser(
        "enhance", help="image enhancement (restore speckled, blurred or down-sampled images)",
        description="Fine-tune a ViT + reconstruction decoder to undo a synthetic degradation applied on the fly to "
        "real images (no labels needed). Rerunning the same command resumes an unfinished run.",
    )
    _add_common_flags(enhance, "folder of images (any layout sonofm reads, or just image files)", default_batch=8)
    enhance.add_argument("--degradation", required=True,
                         help="speckle, blur, downsample or mixed (one of them at random, or blur/downsample + speckle)")
    enhance.add_argument("--scale", type=int, help="down-sampling factor for downsample/mixed: 2 (default) or 4")
    enhance.set_defaults(handler=run_finetune_enhance)


def add_cls_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of ``finetune cls`` (:data:`CLS_FLAGS` plus ``--preset``); ``sonofm kfold`` takes them all too."""
    from sonofm.tasks.cls.presets import CLS_PRESETS

    _add_common_flags(parser, "dataset folder (class folders, USFM or flat layout)", default_batch=32)
    parser.add_argument("--mode", choices=["full", "partial", "linear"],
                        help="full fine-tuning (default), partial (the backbone's last stage + head) or linear probing")
    parser.add_argument("--preset", choices=sorted(CLS_PRESETS),
                        help="a published protocol's settings (uscl: partial, Adam, lr 0.01, 30 epochs, ...); "
                        "other flags and --set override it")


def cls_config_from_args(config: T, args: argparse.Namespace, flags: dict[str, str]) -> T:
    """``config`` with, in one pass, the ``--preset`` (if any), then the given ``flags``, then ``--set`` overrides."""
    from sonofm.tasks.cls.presets import preset_overrides

    return config_from_args(config, args, flags, preset_overrides(args.preset) if args.preset else ())


def _add_common_flags(parser: argparse.ArgumentParser, data_help: str, default_batch: int) -> None:
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--model", help="backbone name (default usfm_vit_base_patch16; see `sonofm models`)")
    parser.add_argument("--weights", help="local weights: USFM_latest.pth, a sonofm model.safetensors, timm/torchvision file")
    parser.add_argument("--img-size", type=int, help="square input size (default 224)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 30)")
    parser.add_argument("--batch-size", type=int, help=f"images per step (default {default_batch})")
    parser.add_argument("--accumulate", type=int, help="gradient accumulation steps (default 1)")
    parser.add_argument("--train-fraction", type=float, help="keep this grouped, stratified fraction of the training split")
    parser.add_argument("--seed", type=int, help="seed for splits, shuffling and init (default 0)")
    parser.add_argument("--group-by", help="labels.csv column that groups images (patient, case, video), "
                        "filename-prefix, or none; default: a known case column, else the DICOM patient ids")
    parser.add_argument("--lr", type=float, help="peak learning rate of the head (default 5e-4)")
    add_hardware_flags(parser)
    add_output_flags(parser, "run", "--set optim.layer_decay=0.75")


def run_finetune_cls(args: argparse.Namespace) -> int:
    from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier

    finetune_classifier(cls_config_from_args(ClsFinetuneConfig(), args, CLS_FLAGS), args.out, overwrite=args.overwrite)
    return 0


def run_finetune_seg(args: argparse.Namespace) -> int:
    from sonofm.tasks.seg.finetune import SegFinetuneConfig, finetune_segmenter

    finetune_segmenter(config_from_args(SegFinetuneConfig(), args, SEG_FLAGS), args.out, overwrite=args.overwrite)
    return 0


def run_finetune_enhance(args: argparse.Namespace) -> int:
    from sonofm.tasks.enhance.finetune import EnhanceFinetuneConfig, finetune_enhancer

    finetune_enhancer(config_from_args(EnhanceFinetuneConfig(), args, ENHANCE_FLAGS), args.out,
                      overwrite=args.overwrite)
    return 0
