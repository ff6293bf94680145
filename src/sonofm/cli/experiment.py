"""``sonofm experiment label-efficiency|compare``: flags -> :class:`LabelEfficiencyConfig` or :class:`CompareConfig`
-> :func:`run_label_efficiency` or :func:`run_compare`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonofm.cli.options import add_logger_flag, add_output_flags, config_from_args
from sonofm.errors import SonofmError

LABEL_EFFICIENCY_FLAGS = {
    "task": "task", "data": "data", "pretrain_data": "pretrain_data", "weights": "weights", "model": "model",
    "img_size": "img_size", "fractions": "fractions", "seeds": "seeds", "split_seed": "split_seed", "logger": "loggers",
}
COMPARE_FLAGS = {
    "task": "task", "data": "data", "init": "inits", "model": "model", "img_size": "img_size", "fractions": "fractions",
    "seeds": "seeds", "split_seed": "split_seed", "folds": "folds", "group_by": "group_by", "logger": "loggers",
}


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0.1,0.25,1.0, got {text!r}") from None


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
    _register_compare(kinds)


def _register_compare(kinds: argparse._SubParsersAction) -> None:
    compare = kinds.add_parser(
        "compare", help="several initialisations fine-tuned on the same splits, folds and seeds",
        description="Fine-tune from every --init at every label fraction and seed (and fold, with --folds), all inits "
        "on the same splits; writes results.csv, summary.csv (mean ± std), paired_differences.csv (each init minus "
        "scratch, or the first init, on the same seed and fold, with a 95 % t interval) and compare.png. Rerunning "
        "resumes; finished runs are kept.",
    )
    compare.add_argument("--task", choices=["cls", "seg"], help="classification (default) or segmentation")
    compare.add_argument("--data", help="labelled dataset for fine-tuning")
    compare.add_argument("--init", action="append", metavar="[NAME=]SPEC",
                         help="an initialisation: scratch, mim:RUN (a finished `pretrain mim` run), aclus:RUN (a "
                         "finished `pretrain aclus` run) or weights:FILE (backbone weights), optionally named "
                         "(usfm=weights:USFM_latest.pth); repeat for each, at least two")
    compare.add_argument("--model", help="backbone of every run (default usfm_vit_small_patch16)")
    compare.add_argument("--img-size", type=int, help="input size of every run (default 128)")
    compare.add_argument("--fractions", type=_fractions, help="label fractions (default 0.1,0.25,1.0)")
    compare.add_argument("--seeds", type=int, help="seeds per fraction and init (default 3)")
    compare.add_argument("--split-seed", type=int, help="seed of the split, or of the folds (default 0)")
    compare.add_argument("--folds", type=int, metavar="K",
                         help="grouped K-fold cross-validation, each fold tested in turn (default: one fixed split)")
    compare.add_argument("--group-by", metavar="COL", help="grouping column of the split or folds (patient, video)")
    add_logger_flag(compare)
    add_output_flags(compare, "experiment", "--set cls.epochs=15 --set seg.head=linear")
    compare.set_defaults(handler=run_compare_command)


def run_label_efficiency_command(args: argparse.Namespace) -> int:
    from sonofm.workflows.label_efficiency import LabelEfficiencyConfig, run_label_efficiency

    config = config_from_args(LabelEfficiencyConfig(), args, LABEL_EFFICIENCY_FLAGS)
    config.validate()
    if config.weights and not Path(config.weights).is_file():
        raise SonofmError(f"--weights {config.weights} is not a file; nothing was started")
    run_label_efficiency(config, args.out, overwrite=args.overwrite)
    return 0


def run_compare_command(args: argparse.Namespace) -> int:
    from sonofm.workflows.compare import CompareConfig, run_compare

    run_compare(config_from_args(CompareConfig(), args, COMPARE_FLAGS), args.out, overwrite=args.overwrite)
    return 0
