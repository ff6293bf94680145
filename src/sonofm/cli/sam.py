"""``sonofm sam finetune|train-prompter|automask|evaluate``: A-SAM, its automatic prompter and anatomy masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonofm.cli.options import HARDWARE_FLAGS, add_hardware_flags, add_output_flags, config_from_args
from sonofm.errors import SonofmError

TRAINING_FLAGS = {
    "data": "data", "epochs": "epochs", "batch_size": "batch_size", "seed": "seed", "group_by": "group_by",
    "lr": "optim.lr", **HARDWARE_FLAGS,
}
FINETUNE_FLAGS = {
    **TRAINING_FLAGS, "sam_checkpoint": "sam_checkpoint", "sam_type": "sam_type", "img_size": "img_size",
    "prompts": "prompts", "adapter": "adapter", "num_classes": "num_classes",
    "train_fraction": "train_fraction",
}
PROMPTER_FLAGS = {**TRAINING_FLAGS, "run": "run"}


def register(subparsers: argparse._SubParsersAction) -> None:
    sam = subparsers.add_parser("sam", help="A-SAM: Segment Anything adapted to ultrasound, automatic anatomy masks")
    commands = sam.add_subparsers(dest="sam_command", required=True, metavar="COMMAND")

    finetune = commands.add_parser(
        "finetune", help="adapt SAM to ultrasound with prompts drawn from masks (SAMUS adapters, or LoRA)",
        description="Stage 1 of A-SAM. Rerunning the same command resumes an unfinished run.",
    )
    finetune.add_argument("--data", help="dataset with images and masks (flat, USFM or SAMUS layout)")
    finetune.add_argument("--sam-checkpoint", help="local SAM checkpoint, e.g. sam_vit_b_01ec64.pth")
    finetune.add_argument("--sam-type", help="vit_b (default), vit_l, vit_h, or vit_tiny (random-init trials)")
    finetune.add_argument("--img-size", type=int,
                          help="square input size (default 256; SAMUS takes 64-512, SAM's native is 1024)")
    finetune.add_argument("--prompts", type=lambda text: [kind.strip() for kind in text.split(",")],
                          help="prompt kinds to train and score, comma-separated (default point,box)")
    finetune.add_argument("--adapter", choices=["samus", "lora", "full", "frozen"],
                          help="samus (default: SAMUS's CNN branch and adapters at 8-px token stride, as ACLUS), "
                          "lora (LoRA on qkv + mask decoder), full (encoder + decoder), frozen (decoder only)")
    finetune.add_argument("--num-classes", type=int, help="mask classes including background (default: from masks)")
    finetune.add_argument("--train-fraction", type=float, help="keep this grouped fraction of the training split")
    _add_training_flags(finetune, default_epochs=20)
    finetune.set_defaults(handler=run_finetune)

    prompter = commands.add_parser(
        "train-prompter", help="train the class-conditional automatic prompter on a finished A-SAM run",
        description="Stage 2 of A-SAM: the A-SAM stays frozen; the prompter and the mask decoder train.",
    )
    prompter.add_argument("--run", help="finished `sonofm sam finetune` run")
    prompter.add_argument("--data", help="dataset with images and masks of the same classes")
    _add_training_flags(prompter, default_epochs=30)
    prompter.set_defaults(handler=run_train_prompter)

    automask = commands.add_parser(
        "automask", help="anatomy-id maps for a folder of images (resumable, shardable)",
        description="Writes OUT/masks/<image>.png at each image's size and OUT/index.csv; reruns skip finished images.",
    )
    automask.add_argument("--run", required=True, help="finished `sonofm sam train-prompter` run")
    automask.add_argument("--images", required=True,
                          help="image folder (searched recursively), or a packed folder (`sonofm data pack`)")
    automask.add_argument("--out", required=True, help="output folder")
    automask.add_argument("--batch-size", type=int, default=8)
    automask.add_argument("--shard", help="K/N: process every N-th image from K (default: RANK/WORLD_SIZE or 0/1)")
    automask.add_argument("--precision", default="auto", choices=["auto", "bf16", "32"])
    automask.add_argument("--num-workers", type=int, default=1)
    automask.add_argument("--accelerator", default="auto")
    automask.add_argument("--no-progress", action="store_true")
    automask.set_defaults(handler=run_automask)

    evaluate = commands.add_parser("evaluate", help="Dice, IoU, HD95 per class of an A-SAM run")
    evaluate.add_argument("--run", required=True, help="finished `sonofm sam` run")
    evaluate.add_argument("--data", help="another dataset (default: the run's own data and split)")
    evaluate.add_argument("--mode", choices=["prompt", "auto"],
                          help="prompt: clicks/boxes from the masks; auto: the prompter (default for prompter runs)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=run_evaluate)


def _add_training_flags(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    parser.add_argument("--epochs", type=int, help=f"training epochs (default {default_epochs})")
    parser.add_argument("--batch-size", type=int, help="images per step (default 8)")
    parser.add_argument("--lr", type=float, help="learning rate (default 5e-4)")
    parser.add_argument("--seed", type=int, help="seed for splits, prompts, shuffling and init (default 0)")
    parser.add_argument("--group-by", help="labels.csv column that groups images (patient, case, video), "
                        "filename-prefix, or none; default: a known case column, else the DICOM patient ids")
    add_hardware_flags(parser)
    add_output_flags(parser, "run", "--set lora_rank=8")


def run_finetune(args: argparse.Namespace) -> int:
    from sonofm.tasks.sam.train import SamFinetuneConfig, finetune_sam

    finetune_sam(config_from_args(SamFinetuneConfig(), args, FINETUNE_FLAGS), args.out, overwrite=args.overwrite)
    return 0


def run_train_prompter(args: argparse.Namespace) -> int:
    from sonofm.tasks.sam.train import PrompterConfig, train_prompter

    train_prompter(config_from_args(PrompterConfig(), args, PROMPTER_FLAGS), args.out, overwrite=args.overwrite)
    return 0


def run_automask(args: argparse.Namespace) -> int:
    from sonofm.data.packed import is_url
    from sonofm.data.work_shard import Shard
    from sonofm.tasks.sam.automask import automask

    if not is_url(args.images) and not Path(args.images).is_dir():  # checked before --out is claimed for them
        raise SonofmError(f"--images {args.images} is not a folder; nothing was written")
    shard = Shard.parse(args.shard) if args.shard else None
    summary = automask(args.run, args.images, args.out, args.batch_size, shard, args.precision, args.num_workers,
                       args.accelerator, progress=not args.no_progress)
    print(f"{summary.written} masks written, {summary.already_done} already done, "
          f"{summary.unreadable} unreadable images skipped")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from sonofm.cli.evaluate import print_metrics
    from sonofm.inference.sam_evaluate import evaluate_sam_run

    metrics, path = evaluate_sam_run(args.run, args.data, args.mode, args.split, progress=not args.no_progress)
    print_metrics(metrics, path)
    return 0
