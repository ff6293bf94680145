"""``sonofm experiment label-efficiency``: flags -> :class:`LabelEfficiencyConfig` -> :func:`run_label_efficiency`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonofm.cli.options import add_logger_flag, add_output_flags, config_from_args
from sonofm.errors import SonofmError

LABEL_EFFICIENCY_FLAGS = {
    "task": "task", "data": "data", "pretrain_data": "pretrain_data", "weights": "weights", "model": "model",
    "img_size": "img_size", "fractions": "fractions", "seeds": "seeds", "split_seed": "split_seed", "logger": "loggers",
}


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.1,0.25,1.0, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    experiment = subparsers.add_parser("experiment", help="multi-run studies")
    kinds = experiment.add_subparsers(dest="kind", required=True, metavar="EXPERIMENT")
    study = kinds.add_parser(
        "label-efficiency", help="pretrained vs random init at several label fractions",
        description="Pretrain with MIM (or take --weights), then fine-tune from those weights and from random init "
        "at every label fraction and seed on one fixed grouped split; writes results.csv, summary.md (mean ± std) "
        "and label_efficiency.png. Rerunning resumes.",
    )
    study.add_argument("--task", choices=["cls", "seg"], help="classification (default) or segmentation")
    study.add_argument("--data", help="labelled dataset for fine-tuning")
    source = study.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrain-data", nargs="+", metavar="PATH", help="image folders to pretrain on")
    source.add_argument("--weights", help="an existing pretrained encoder (skips pretraining)")
    study.add_argument("--model", help="encoder for every step (default usfm_vit_small_patch16)")
    study.add_argument("--img-size", type=int, help="input size for every step (default 128)")
    study.add_argument("--fractions", type=_fractions, help="label fractions (default 0.1,0.25,1.0)")
    study.add_argument("--seeds", type=int, help="seeds per fraction and init (default 3)")
    study.add_argument("--split-seed", type=int, help="seed of the one train/val/test split (default 0)")
    add_logger_flag(study)
    add_output_flags(study, "experiment", "--set pretrain.epochs=10 --set cls.epochs=15 --set seg.head=linear")
    study.set_defaults(handler=run_label_efficiency_command)


def run_label_efficiency_command(args: argparse.Namespace) -> int:
    from sonofm.workflows.label_efficiency import LabelEfficiencyConfig, run_label_efficiency

    config = config_from_args(LabelEfficiencyConfig(), args, LABEL_EFFICIENCY_FLAGS)
    config.validate()
    if config.weights and not Path(config.weights).is_file():
        raise SonofmError(f"--weights {config.weights} is not a file; nothing was started")
    run_label_efficiency(config, args.out, overwrite=args.overwrite)
    return 0
