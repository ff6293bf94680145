"""Fine-tuning throughput and peak memory of a backbone + ImageClassifier, fp32 against bf16 autocast.

One training step = forward + cross-entropy + backward + AdamW step (layer-decay groups from ``build_optimizer``)
+ ``zero_grad``, on a fixed random batch. Each precision runs in its own subprocess so that its peak memory is its own;
that subprocess also times a large GEMM in the same dtype (the attainable matmul rate of this machine) and counts the
model's FLOPs per step with ``FlopCounterMode``. The parent prints one JSON line per figure, ratios included.

    .venv/bin/python benchmarks/finetune_throughput.py            # ViT-B/16, 224 px, CPU or CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import (  # noqa: E402
    PRECISIONS,
    Loss,
    TrainingSettings,
    TrainMeasurement,
    add_training_flags,
    add_worker_flag,
    measure_in_subprocess,
    speedup_line,
    time_training_steps,
    training_figure_lines,
)

NUM_CLASSES = 3
CPU_STEPS = 6  # default timed steps on CPU


def build_training(settings: TrainingSettings, device: torch.device) -> tuple[Loss, torch.optim.Optimizer]:
    """The classifier and its AdamW on ``device``: the cross-entropy of a fixed random batch, and the optimiser."""
    from sonofm.models import create_backbone
    from sonofm.models.classifier import ImageClassifier
    from sonofm.engine.optim import OptimConfig, build_optimizer

    model = ImageClassifier(create_backbone(settings.model, img_size=settings.img_size), NUM_CLASSES).to(device)
    model.train()
    optimizer = build_optimizer(model, OptimConfig(layer_decay=0.65))  # as when fine-tuning pretrained weights
    images = torch.randn(settings.batch_size, 3, settings.img_size, settings.img_size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (settings.batch_size,), device=device)
    return (lambda: F.cross_entropy(model(images), labels)), optimizer


def measure(settings: TrainingSettings, precision: str) -> TrainMeasurement:
    """GEMM rate, FLOPs per step (first warmup step) and timed training steps for one precision."""
    return time_training_steps(settings, precision, build_training)


def figure_lines(settings: TrainingSettings, results: dict[str, TrainMeasurement]) -> list[dict]:
    """One JSON-ready dict per figure: per-precision figures, then the bf16/fp32 ratio; all from the same run."""
    common = {
        "benchmark": "finetune_throughput",
        "model": settings.model,
        "img_size": settings.img_size,
        "batch_size": settings.batch_size,
        "device": settings.device,
        "threads": settings.threads,
    }
    lines = training_figure_lines(common, results, settings.batch_size, settings.gemm_size, settings.device)
    return [*lines, speedup_line(common, results, settings.batch_size)]


def parse_settings(argv: list[str] | None = None) -> tuple[TrainingSettings, str | None]:
    """Command-line flags -> settings (device-dependent defaults filled in) and the worker precision, if any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_flags(parser, CPU_STEPS)
    add_worker_flag(parser, tuple(PRECISIONS))
    args = parser.parse_args(argv)
    return TrainingSettings.from_flags(parser, args, CPU_STEPS), args.worker


def main(argv: list[str] | None = None) -> None:
    settings, worker = parse_settings(argv)
    if worker:
        print(json.dumps(asdict(measure(settings, worker))))
        return
    results = {precision: measure_in_subprocess(__file__, precision, settings, TrainMeasurement)
               for precision in PRECISIONS}
    for line in figure_lines(settings, results):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
