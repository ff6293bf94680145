"""``sonofm pretrain mim|aclus``: flags -> a pretraining config -> the method's pretraining function."""

from __future__ import annotations

import argparse

from sonofm.cli.options import HARDWARE_FLAGS, add_hardware_flags, add_output_flags, config_from_args

ACLUS_FLAGS = {
    "data": "data", "masks": "masks", "model": "model", "img_size": "img_size", "epochs": "epochs",
    "max_steps": "max_steps", "batch_size": "batch_size", "accumulate": "accumulate", "seed": "seed",
    "lr": "optim.lr", "balance": "balance", **HARDWARE_FLAGS,
}
MIM_FLAGS = {
    "data": "data", "model": "model", "img_size": "img_size", "epochs": "epochs", "max_steps": "max_steps",
    "batch_size": "batch_size", "accumulate": "accumulate", "seed": "seed", "lr": "optim.lr", "balance": "balance",
    **HARDWARE_FLAGS,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    pretrain = subparsers.add_parser("pretrain", help="self-supervised pretraining on unlabeled images")
    methods = pretrain.add_subparsers(dest="method", required=True, metavar="METHOD")
    mim = methods.add_parser(
        "mim", help="USFM spatial-frequency masked image modelling",
        description="Pretrain an encoder by rebuilding images from block-masked, band-stop-filtered views. "
        "Rerunning the same command resumes an unfinished run.",
    )
    mim.add_argument("--data", nargs="+", metavar="PATH",
                     help="folders scanned recursively for images (labels ignored, duplicates skipped)")
    mim.add_argument("--model", help="encoder (default usfm_vit_base_patch16; see `sonofm models`)")
    _add_balance_flag(mim)
    _add_schedule_flags(mim, default_epochs=100, seeds="masks, order, augmentation and init",
                        lr_help="peak learning rate (default 2e-4)")
    add_output_flags(mim, "run", "--set mim.mask_ratio=0.5 --set mim.frequency=false")
    mim.set_defaults(handler=run_pretrain_mim)

    aclus = methods.add_parser(
        "aclus", help="ACLUS anatomy-level contrastive pretraining (ResNet + FPN) driven by anatomy-id maps",
        description="Pretrain a ResNet by contrasting anatomy regions across two views and predicting a corrupted "
        "core region. Rerunning the same command resumes an unfinished run.",
    )
    aclus.add_argument("--data", nargs="+", metavar="PATH",
                       help="image folders (searched recursively), or one packed folder (`sonofm data pack`)")
    aclus.add_argument("--masks", nargs="+", metavar="PATH",
                       help="one anatomy-map folder per --data folder (same relative paths), or one automask "
                       "index.csv; for a packed folder, the `sonofm sam automask` output of that pack")
    aclus.add_argument("--model", help="resnet18 (default) or resnet50")
    _add_balance_flag(aclus)
    _add_schedule_flags(aclus, default_epochs=300, seeds="views, ids, corruption, order and init",
                        lr_help="LARS base learning rate per 256 images (default 0.3)")
    add_output_flags(aclus, "run", "--set aclus.num_ids=8 --set aclus.background=false")
    aclus.set_defaults(handler=run_pretrain_aclus)


def _add_balance_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--balance", metavar="source|FILE.csv",
                        help="source: give each --data folder (an organ, a site; or each source of a packed folder) "
                        "the same share of an epoch's draws, as USFM balanced organs; FILE.csv: rows `source,weight` "
                        "set the shares (default: every image once per epoch)")


def _add_schedule_flags(parser: argparse.ArgumentParser, default_epochs: int, seeds: str, lr_help: str) -> None:
    """``--img-size``, ``--epochs`` | ``--max-steps``, ``--batch-size``, ``--accumulate``, ``--seed``, ``--lr`` and
    the hardware flags."""
    parser.add_argument("--img-size", type=int, help="square input size (default 224)")
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument("--epochs", type=int, help=f"passes over the images (default {default_epochs})")
    bound.add_argument("--max-steps", type=int, help="optimiser steps instead of epochs")
    parser.add_argument("--batch-size", type=int, help="images per step and device (default 64)")
    parser.add_argument("--accumulate", type=int, help="gradient accumulation steps (default 1)")
    parser.add_argument("--seed", type=int, help=f"seed for {seeds} (default 0)")
    parser.add_argument("--lr", type=float, help=lr_help)
    add_hardware_flags(parser)


def run_pretrain_mim(args: argparse.Namespace) -> int:
    from sonofm.tasks.mim.pretrain import MimPretrainConfig, pretrain_mim

    pretrain_mim(config_from_args(MimPretrainConfig(), args, MIM_FLAGS), args.out, overwrite=args.overwrite)
    return 0


def run_pretrain_aclus(args: argparse.Namespace) -> int:
    from sonofm.tasks.aclus.pretrain import AclusPretrainConfig, pretrain_aclus

    pretrain_aclus(config_from_args(AclusPretrainConfig(), args, ACLUS_FLAGS), args.out, overwrite=args.overwrite)
    return 0
