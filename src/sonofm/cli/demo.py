"""``sonofm demo``: the main job on the built-in phantom data (or a given dataset), end to end on a laptop CPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEMO_OUT = "runs/demo"
DEMO_IMAGES_PER_CLASS = 100
# A ViT trained from scratch on a few hundred images barely leaves chance level within a CPU-minute budget (it needs
# pretraining, which the MIM pretraining command will provide); a small CNN learns the phantom classes in seconds.
DEMO_MODEL = "resnet18"


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="generate phantom data, fine-tune a small classifier, evaluate, report",
        description="The main job: builds the phantom data set (unless --data is given), trains a small classifier "
        "(ResNet-18 from scratch), evaluates it on the held-out test split and prints where the results are.",
    )
    demo.add_argument("--data", help="classification dataset to use instead of the built-in phantom")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default {DEMO_OUT})")
    demo.add_argument("--epochs", type=int, default=12)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="redo a finished demo")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from sonofm.data.phantom import write_phantom_dataset
    from sonofm.runs.run_folder import RunFolder
    from sonofm.tasks.finetune_cls import ClsFinetuneConfig, finetune_classifier, format_metrics

    out = Path(args.out)
    if args.data:
        data = Path(args.data)
    else:
        print(f"generating the phantom data set in {out / 'phantom'} ...")
        data = write_phantom_dataset(out / "phantom", n_per_class=DEMO_IMAGES_PER_CLASS, seed=args.seed) / "cls"
    run = RunFolder(out / f"cls_{DEMO_MODEL}_scratch")
    if run.is_finished and not args.overwrite:
        print("the demo already finished (pass --overwrite to redo it)")
        print(format_metrics(json.loads(run.metrics.read_text()), run.path))
        return 0
    config = ClsFinetuneConfig(
        data=str(data), model=DEMO_MODEL, img_size=128, epochs=args.epochs, batch_size=32,
        seed=args.seed, progress=not args.no_progress,
    )
    finetune_classifier(config, run.path, overwrite=args.overwrite)
    return 0
