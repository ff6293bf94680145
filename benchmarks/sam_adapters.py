"""A-SAM adapters side by side: SAMUS (sonofm's default, ACLUS's A-SAM) against LoRA, one JSON line per figure.

* Speed (always): a stage-1 training step of ``--sam-type`` (random weights; weights do not change the speed) at
  ``--img-size``: encoder, one click prompt per image through the decoder, the loss, backward and Adam, per adapter
  and precision, each in its own subprocess. Figures: trained parameters, images/s, peak memory, and SAMUS's images/s
  over LoRA's (the baseline, measured in the same run).
* Learning (``--data PATH`` for each flat segmentation set, e.g. HC18 and CCA_CAROTID): a random-init ``vit_tiny``
  adapted by each adapter for ``--epochs`` at 128 px on ``--images`` rows of the set (every k-th, so every subject
  stays represented; split grouped by subject): test Dice from fixed clicks and boxes, before and after, and the
  run's wall time. Without official SAM weights these are learning checks, not SAM figures.

    .venv/bin/python benchmarks/sam_adapters.py --data ../shared/data/seg/HC18 ../shared/data/seg/CCA_CAROTID
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import (  # noqa: E402
    PRECISIONS,
    TrainMeasurement,
    add_machine_flags,
    add_precisions_flag,
    add_worker_flag,
    default_gemm_size,
    figure_line,
    images_per_s,
    measure_in_subprocess,
    resolve_precisions,
    time_training_steps,
    training_figure_lines,
)

ADAPTERS = ("samus", "lora")
CLASSES = ["background", "anatomy"]


@dataclass
class Settings:
    """One speed measurement: ``adapters`` holds the adapter a worker measures."""

    sam_type: str
    img_size: int
    batch_size: int
    adapters: tuple[str, ...]
    steps: int
    warmup: int
    threads: int
    device: str
    gemm_size: int


def trained_parameters(sam_type: str, img_size: int, adapter: str) -> tuple[int, int]:
    """(trained, total) parameters of a stage-1 A-SAM."""
    from sonofm.sam import AdaptedSam, build_sam

    model = AdaptedSam(build_sam(sam_type, img_size, samus=adapter == "samus"), CLASSES, adapter)
    model.set_trainable("adapt")
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))


def build_step(settings: Settings, device: torch.device):
    """The loss of one fixed batch (one click per image on a random square) and Adam over the trained parameters."""
    from sonofm.sam import AdaptedSam, build_sam
    from sonofm.sam.losses import bce_dice_loss
    from sonofm.sam.prompts import prompts_from_masks

    (adapter,), size = settings.adapters, settings.img_size
    model = AdaptedSam(build_sam(settings.sam_type, size, samus=adapter == "samus"), CLASSES, adapter).to(device)
    model.set_trainable("adapt")
    images = torch.randn(settings.batch_size, 3, size, size, device=device)
    masks = torch.zeros(settings.batch_size, size, size, dtype=torch.long, device=device)
    masks[:, size // 4: size // 2, size // 4: 3 * size // 4] = 1
    prompts = prompts_from_masks(masks, 2, "point", torch.Generator().manual_seed(0))
    targets = prompts.targets(masks)

    def loss() -> torch.Tensor:
        return bce_dice_loss(model.prompted_logits(model.embed(images), prompts), targets, pos_weight=2.0)["loss"]

    return loss, torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)


def speed_lines(settings: Settings, precisions: list[str]) -> list[dict]:
    """Per adapter: trained parameters and the training figures; then SAMUS / LoRA images/s per precision."""
    lines, rates = [], {}
    for adapter in settings.adapters:
        one = replace(settings, adapters=(adapter,))
        common = {"benchmark": "sam_adapters", "part": "speed", "adapter": adapter, "sam_type": settings.sam_type,
                  "img_size": settings.img_size, "batch_size": settings.batch_size, "device": settings.device,
                  "threads": settings.threads}
        trained, total = trained_parameters(settings.sam_type, settings.img_size, adapter)
        lines.append(figure_line(common, "-", "trained_parameters", trained, "count", total=total))
        results = {}
        for precision in precisions:
            print(f"# {adapter} {precision} training steps", file=sys.stderr, flush=True)
            results[precision] = measure_in_subprocess(__file__, precision, one, TrainMeasurement)
            rates[adapter, precision] = images_per_s(results[precision], settings.batch_size)
        lines += training_figure_lines(common, results, settings.batch_size, settings.gemm_size, settings.device)
    if set(ADAPTERS) <= set(settings.adapters):
        common = {"benchmark": "sam_adapters", "part": "speed", "adapter": "samus", "sam_type": settings.sam_type,
                  "img_size": settings.img_size, "device": settings.device}
        lines += [figure_line(common, precision, "images_per_s_vs_lora",
                              round(rates["samus", precision] / rates["lora", precision], 3), "x",
                              baseline="lora images_per_s") for precision in precisions]
    return lines


def learning_lines(data: Path, adapter: str, images: int, epochs: int, lr: float, work: Path) -> list[dict]:
    """Fine-tune a random-init vit_tiny with ``adapter`` on a subset of ``data``: Dice before/after, wall time."""
    from sonofm.data.layouts import load_index
    from sonofm.data.splits import load_split
    from sonofm.data.subset import copy_flat_subset
    from sonofm.sam import build_adapted_sam, build_sam, save_sam_checkpoint
    from sonofm.tasks.sam.evaluation import evaluate_sam
    from sonofm.tasks.sam.train import SamFinetuneConfig, finetune_sam

    subset = copy_flat_subset(data, work / f"{data.name}_{adapter}", images)
    torch.manual_seed(0)
    checkpoint = save_sam_checkpoint(build_sam("vit_tiny"), work / f"{data.name}_{adapter}.pth")
    config = SamFinetuneConfig(data=str(subset), sam_checkpoint=str(checkpoint), sam_type="vit_tiny", img_size=128,
                               epochs=epochs, batch_size=8, progress=False, adapter=adapter)
    config.optim.lr = lr
    start = time.perf_counter()
    metrics = finetune_sam(config, work / f"run_{data.name}_{adapter}", echo=lambda line: None)
    seconds = time.perf_counter() - start
    index = load_index(subset, task="seg")
    test = load_split(work / f"run_{data.name}_{adapter}" / "split.csv", index)["test"]
    before, _ = evaluate_sam(build_adapted_sam(checkpoint, "vit_tiny", 128, index.classes, adapter), test, "prompt",
                             ["point", "box"], progress=False)
    trained, _ = trained_parameters("vit_tiny", 128, adapter)
    common = {"benchmark": "sam_adapters", "part": "learning", "adapter": adapter, "data": data.name,
              "images": images, "epochs": epochs, "lr": lr, "sam_type": "vit_tiny", "img_size": 128}
    lines = [figure_line(common, "auto", f"test_{kind}_dice", round(metrics[f"test/{kind}/dice"], 4), "Dice",
                         untrained=round(before[f"{kind}/dice"], 4)) for kind in ("point", "box")]
    return [*lines, figure_line(common, "auto", "run_seconds", round(seconds, 1), "s", trained_parameters=trained)]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-type", default="vit_b", help="speed part: vit_b (default), vit_l, vit_h or vit_tiny")
    parser.add_argument("--img-size", type=int, default=256, help="speed part: input size (default 256)")
    parser.add_argument("--batch-size", type=int, default=2, help="speed part: images per step (default 2)")
    parser.add_argument("--adapters", type=lambda text: tuple(text.split(",")), default=ADAPTERS)
    parser.add_argument("--steps", type=int, default=3, help="speed part: timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--data", type=Path, nargs="*", default=[], help="learning part: flat segmentation sets")
    parser.add_argument("--images", type=int, default=60, help="learning part: images per set (default 60)")
    parser.add_argument("--epochs", type=int, default=25, help="learning part: epochs (default 25)")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning part: learning rate (default 2e-3)")
    add_machine_flags(parser)
    add_precisions_flag(parser)
    add_worker_flag(parser, list(PRECISIONS))
    args = parser.parse_args(argv)
    settings = Settings(args.sam_type, args.img_size, args.batch_size, args.adapters, args.steps, args.warmup,
                        args.threads, args.device, args.gemm_size or default_gemm_size(args.device))
    return args, settings


def main(argv: list[str] | None = None) -> None:
    args, settings = parse_args(argv)
    if args.worker:
        print(json.dumps(asdict(time_training_steps(settings, args.worker, build_step))))
        return
    for line in speed_lines(settings, resolve_precisions(args.precisions, settings.device)):
        print(json.dumps(line), flush=True)
    with tempfile.TemporaryDirectory() as work:
        for data in args.data:
            for adapter in settings.adapters:
                print(f"# learning: {adapter} on {data}", file=sys.stderr, flush=True)
                for line in learning_lines(data, adapter, args.images, args.epochs, args.lr, Path(work)):
                    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
