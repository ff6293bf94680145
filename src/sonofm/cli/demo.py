"""``sonofm demo``: the main job (MIM pretraining, fine-tuning from it and from scratch, one HTML report)."""

from __future__ import annotations

import argparse

DEMO_OUT = "runs/demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="pretrain, fine-tune (pretrained vs scratch), evaluate and write report.html",
        description="The main job: builds the phantom data set (unless --data is given), MIM-pretrains a tiny USFM "
        "ViT on its images, fine-tunes classification and segmentation from those weights and from scratch, and "
        "writes OUT/report.html (self-contained). Finished stages are reused on a rerun.",
    )
    demo.add_argument("--data", help="a classification dataset, or a folder holding cls/ and seg/ datasets "
                      "(default: the built-in phantom set)")
    demo.add_argument("--seg-data", help="a segmentation dataset (with --data; without one, segmentation is skipped)")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default {DEMO_OUT})")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="tiny budget (about a minute): checks the pipeline only")
    demo.add_argument("--overwrite", action="store_true", help="redo every stage")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from sonofm.errors import SonofmError
    from sonofm.workflows.demo import DemoConfig, quick_config, run_demo

    if args.seg_data and not args.data:
        raise SonofmError("--seg-data needs --data (the phantom set brings its own segmentation data)")
    config = DemoConfig(data=args.data, seg_data=args.seg_data, seed=args.seed, progress=not args.no_progress)
    run_demo(quick_config(config) if args.quick else config, args.out, overwrite=args.overwrite)
    return 0
