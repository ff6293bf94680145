"""``sonofm finetune cls``: flags -> :class:`ClsFinetuneConfig` -> :func:`finetune_classifier`."""

from __future__ import annotations

import argparse

from sonofm.runs.config import apply_overrides

# Flag name -> config field, for flags whose value is copied into the config when given.
CLS_FLAGS = {
    "data": "data", "model": "model", "weights": "weights", "img_size": "img_size", "epochs": "epochs",
    "batch_size": "batch_size", "accumulate": "accumulate", "train_fraction": "train_fraction", "mode": "mode",
    "seed": "seed", "group_by": "group_by", "precision": "precision", "num_workers": "num_workers",
    "devices": "devices", "accelerator": "accelerator", "lr": None,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    finetune = subparsers.add_parser("finetune", help="fine-tune a backbone on a labelled dataset")
    tasks = finetune.add_subparsers(dest="task", required=True, metavar="TASK")
    cls = tasks.add_parser(
        "cls", help="image classification",
        description="Fine-tune for classification. Rerunning the same command resumes an unfinished run.",
    )
    cls.add_argument("--data", required=True, help="dataset folder (class folders, USFM or flat layout)")
    cls.add_argument("--model", help="backbone name (default usfm_vit_base_patch16; see `sonofm models`)")
    cls.add_argument("--weights", help="local weights: USFM_latest.pth, a sonofm model.safetensors, timm/torchvision file")
    cls.add_argument("--img-size", type=int, help="square input size (default 224)")
    cls.add_argument("--epochs", type=int, help="training epochs (default 30)")
    cls.add_argument("--batch-size", type=int, help="images per step (default 32)")
    cls.add_argument("--accumulate", type=int, help="gradient accumulation steps (default 1)")
    cls.add_argument("--train-fraction", type=float, help="keep this grouped, stratified fraction of the training split")
    cls.add_argument("--mode", choices=["full", "linear"], help="full fine-tuning (default) or linear probing")
    cls.add_argument("--seed", type=int, help="seed for splits, shuffling and init (default 0)")
    cls.add_argument("--group-by", help="labels.csv column that groups images (patient, video); default: auto")
    cls.add_argument("--lr", type=float, help="peak learning rate of the head (default 5e-4)")
    cls.add_argument("--precision", choices=["auto", "bf16", "32"], help="auto: bf16 autocast where the hardware is fast")
    cls.add_argument("--num-workers", type=int, help="data-loading worker processes (default 1)")
    cls.add_argument("--accelerator", help="auto (default), cpu or gpu")
    cls.add_argument("--devices", help="number of devices (default 1)")
    cls.add_argument("--out", required=True, help="run folder")
    cls.add_argument("--overwrite", action="store_true", help="replace a finished or different run in --out")
    cls.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config key, e.g. --set optim.layer_decay=0.75 (repeatable)")
    cls.add_argument("--no-progress", action="store_true", help="no progress bars")
    cls.set_defaults(handler=run_finetune_cls)


def run_finetune_cls(args: argparse.Namespace) -> int:
    from sonofm.tasks.finetune_cls import ClsFinetuneConfig, finetune_classifier

    config = ClsFinetuneConfig()
    overrides = list(args.overrides)
    for flag, key in CLS_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if flag == "lr":
            overrides.append(f"optim.lr={value}")
        elif isinstance(value, str):
            setattr(config, key, value)
        else:
            overrides.append(f"{key}={value}")
    if args.no_progress:
        config.progress = False
    config = apply_overrides(config, overrides)
    finetune_classifier(config, args.out, overwrite=args.overwrite)
    return 0
