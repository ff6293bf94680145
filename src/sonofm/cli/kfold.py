"""``sonofm kfold``: every ``finetune cls`` flag plus the fold settings -> :class:`KfoldConfig` -> :func:`run_kfold`."""

from __future__ import annotations

import argparse

from sonofm.cli.finetune import CLS_FLAGS, add_cls_flags, cls_config_from_args

KFOLD_FLAGS = {
    **CLS_FLAGS, "task": "task", "folds": "folds", "fold_file": "fold_file", "gradcam_per_class": "gradcam_per_class",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    kfold = subparsers.add_parser(
        "kfold", help="grouped k-fold cross-validation of fine-tuning",
        description="Fine-tune once per fold (test: that fold; best epoch chosen on a grouped validation part of the "
        "other folds) and summarise: per-fold, mean ± std and pooled metrics, the summed confusion matrix, Grad-CAM "
        "figures. Rerunning the same command resumes; finished folds are kept.",
    )
    kfold.add_argument("--task", help="what to fine-tune: cls (the only task for now; default)")
    kfold.add_argument("--folds", type=int, metavar="K", help="number of folds (default 5, or as in --fold-file)")
    kfold.add_argument("--fold-file", metavar="FILE",
                       help="name,fold,... CSV fixing every image's fold (as `sonofm data split` writes)")
    kfold.add_argument("--gradcam-per-class", type=int, metavar="N",
                       help="Grad-CAM figures per class and fold (default 2; 0: none)")
    add_cls_flags(kfold)
    kfold.set_defaults(handler=run_kfold_command)


def run_kfold_command(args: argparse.Namespace) -> int:
    from sonofm.workflows.kfold import KfoldConfig, run_kfold

    run_kfold(cls_config_from_args(KfoldConfig(), args, KFOLD_FLAGS), args.out, overwrite=args.overwrite)
    return 0
