"""Segmentation training throughput and single-image inference latency of a backbone + Segmenter, fp32 against bf16.

At each image size, one training step = forward + ``Segmenter.loss`` + backward + AdamW step (layer-decay groups from
``build_optimizer``) + ``zero_grad``, on a fixed random batch with random masks; inference = ``model.predict`` of one
image in eval mode under ``torch.inference_mode``. Every (image size, precision, training or inference) runs in its own
subprocess so that its peak memory is its own; the training subprocess also times a large GEMM in the same dtype (the
attainable matmul rate of this machine) and counts the model's FLOPs per step with ``FlopCounterMode``. The parent
prints one JSON line per figure, bf16/fp32 ratios included, after each image size.

    .venv/bin/python benchmarks/segmentation_throughput.py    # ViT-B/16 + UPerNet, 224 and 512 px, CPU or CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass, replace

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import (  # noqa: E402
    PRECISIONS,
    Loss,
    TrainMeasurement,
    add_machine_flags,
    add_worker_flag,
    autocast,
    check_warmup,
    cuda_peak_bytes,
    default_gemm_size,
    figure_line,
    measure_in_subprocess,
    peak_rss_bytes,
    reset_cuda_peak,
    speedup_line,
    start_worker,
    synchronize,
    time_calls,
    time_training_steps,
    training_figure_lines,
    usage_lines,
)

NUM_CLASSES = 2
PHASES = ("train", "infer")
# Default batch at 224 px; other sizes scale it by (224 / size)^2 (same pixels per batch), at least 2.
BASE_BATCH = {"cpu": 8, "cuda": 32}
MIN_TRAIN_BATCH = 2  # the heads' BatchNorm (UPerNet's 1x1 pyramid pooling) needs more than one value per channel


@dataclass
class Settings:
    """What one run measures; the defaults depend on the device (see ``parse_settings``).

    ``batch_sizes[i]`` is the training batch at ``img_sizes[i]``; a worker measures a single size (see ``at``).
    """

    model: str
    head: str
    img_sizes: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    steps: int
    warmup: int
    repeats: int
    threads: int
    device: str
    gemm_size: int

    def at(self, index: int) -> Settings:
        """These settings restricted to the ``index``-th image size."""
        return replace(self, img_sizes=(self.img_sizes[index],), batch_sizes=(self.batch_sizes[index],))

    def single_size(self) -> tuple[int, int]:
        """(image size, training batch size) of single-size settings; raises on several sizes."""
        if len(self.img_sizes) != 1:
            raise ValueError(f"a measurement takes a single image size, not {self.img_sizes}; use Settings.at")
        return self.img_sizes[0], self.batch_sizes[0]


@dataclass
class InferMeasurement:
    """Raw single-image inference results of one image size and precision, measured in one process."""

    latencies_s: list[float]
    cpu_share: float
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None


def build_model(settings: Settings, img_size: int, device: torch.device) -> torch.nn.Module:
    from sonofm.models import create_backbone
    from sonofm.models.segmenter import Segmenter

    backbone = create_backbone(settings.model, img_size=img_size)
    return Segmenter(backbone, NUM_CLASSES, head=settings.head).to(device)


def build_training(settings: Settings, device: torch.device) -> tuple[Loss, torch.optim.Optimizer]:
    """The segmenter and its AdamW on ``device``: the loss of a fixed random batch with random masks, and the
    optimiser."""
    from sonofm.engine.optim import OptimConfig, build_optimizer

    img_size, batch_size = settings.single_size()
    model = build_model(settings, img_size, device)
    model.train()
    optimizer = build_optimizer(model, OptimConfig(layer_decay=0.65))  # as when fine-tuning pretrained weights
    images = torch.randn(batch_size, 3, img_size, img_size, device=device)
    masks = torch.randint(0, NUM_CLASSES, (batch_size, img_size, img_size), device=device)
    return (lambda: model.loss(model(images), masks)["loss"]), optimizer


def measure_training(settings: Settings, precision: str) -> TrainMeasurement:
    """GEMM rate, FLOPs per step (first warmup step) and timed training steps for one size and precision."""
    return time_training_steps(settings, precision, build_training)


def measure_inference(settings: Settings, precision: str) -> InferMeasurement:
    """Latency of ``model.predict`` on one image (eval mode, inference mode) for one size and precision."""
    img_size, _ = settings.single_size()
    device = start_worker(settings)
    reset_cuda_peak(device)

    model = build_model(settings, img_size, device)
    model.eval()
    image = torch.randn(1, 3, img_size, img_size, device=device)

    def predict() -> None:
        with autocast(device, precision):
            model.predict(image)

    with torch.inference_mode():
        for _ in range(settings.warmup):
            predict()
        synchronize(device)
        latencies, cpu_share = time_calls(predict, device, settings.repeats, settings.threads)
    return InferMeasurement(latencies, cpu_share, peak_rss_bytes(), cuda_peak_bytes(device))


MEASURE = {"train": (measure_training, TrainMeasurement), "infer": (measure_inference, InferMeasurement)}


def figure_lines(
    settings: Settings, train: dict[str, TrainMeasurement], infer: dict[str, InferMeasurement]
) -> list[dict]:
    """One JSON-ready dict per figure of one image size: training figures per precision, inference figures per
    precision, then the bf16/fp32 ratios; all from the same run."""
    img_size, batch_size = settings.single_size()
    train_common = {"benchmark": "segmentation_throughput", "model": settings.model, "head": settings.head,
                    "img_size": img_size, "batch_size": batch_size, "device": settings.device,
                    "threads": settings.threads}
    infer_common = {**train_common, "batch_size": 1}  # inference lines: a single image

    lines = training_figure_lines(train_common, train, batch_size, settings.gemm_size, settings.device)
    latency_ms = {}
    for precision, m in infer.items():
        latency_ms[precision] = 1e3 * sum(m.latencies_s) / len(m.latencies_s)
        spread = {"repeats": len(m.latencies_s), "min": round(1e3 * min(m.latencies_s), 3),
                  "max": round(1e3 * max(m.latencies_s), 3)}
        median_ms = 1e3 * statistics.median(m.latencies_s)
        lines += [
            figure_line(infer_common, precision, "infer_latency_ms", round(latency_ms[precision], 3), "ms", **spread),
            figure_line(infer_common, precision, "infer_latency_median_ms", round(median_ms, 3), "ms",
                        repeats=len(m.latencies_s)),
            *usage_lines(infer_common, precision, m, settings.device, prefix="infer_"),
        ]

    infer_speedup = latency_ms["fp32"] / latency_ms["bf16"]
    return [
        *lines,
        speedup_line(train_common, train, batch_size),
        figure_line(infer_common, "bf16", "bf16_infer_speedup_vs_fp32", round(infer_speedup, 3), "x",
                    baseline="fp32 infer_latency_ms"),
    ]


def default_batch_size(img_size: int, device: str) -> int:
    """Same pixels per batch as ``BASE_BATCH`` images at 224 px, at least 2: CPU 8 at 224, 2 at 512; CUDA 32, 6."""
    return max(MIN_TRAIN_BATCH, round(BASE_BATCH[device] * (224 / img_size) ** 2))


def int_list(text: str) -> tuple[int, ...]:
    """``"224,512"`` -> ``(224, 512)``, for argparse."""
    try:
        values = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, tuple[str, str] | None]:
    """Command-line flags -> settings (device-dependent defaults filled in) and the worker's (phase, precision), if
    any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="usfm_vit_base_patch16")
    parser.add_argument("--head", default="upernet", help="segmentation head: upernet, segvit, linear (ViT) or unet")
    parser.add_argument("--img-sizes", type=int_list, default=(224, 512), help="comma-separated; default 224,512")
    parser.add_argument("--batch-sizes", type=int_list,
                        help="training batch per image size (one value: all sizes); default 8 at 224 and 2 at 512 "
                             "on CPU, 32 and 6 on CUDA (same pixels per batch, at least 2)")
    parser.add_argument("--steps", type=int, help="timed training steps; default 3 on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int,
                        help="untimed training steps and untimed inferences; default 1 on CPU, 3 on CUDA "
                             "(>= 1; the first training step also counts FLOPs)")
    parser.add_argument("--repeats", type=int, help="timed single-image inferences; default 5 on CPU, 50 on CUDA")
    add_machine_flags(parser)
    add_worker_flag(parser, [f"{phase}-{precision}" for phase in PHASES for precision in PRECISIONS])
    args = parser.parse_args(argv)
    on_cpu = args.device == "cpu"
    batch_sizes = args.batch_sizes or tuple(default_batch_size(size, args.device) for size in args.img_sizes)
    if len(batch_sizes) == 1:
        batch_sizes *= len(args.img_sizes)
    if len(batch_sizes) != len(args.img_sizes):
        parser.error(f"--batch-sizes needs one value or one per image size ({len(args.img_sizes)}), "
                     f"got {len(batch_sizes)}")
    if min(batch_sizes) < MIN_TRAIN_BATCH:
        parser.error(f"training batch sizes must be at least {MIN_TRAIN_BATCH} (BatchNorm in the heads)")
    warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 3)
    check_warmup(parser, warmup)
    settings = Settings(
        model=args.model,
        head=args.head,
        img_sizes=args.img_sizes,
        batch_sizes=batch_sizes,
        steps=args.steps or (3 if on_cpu else 20),
        warmup=warmup,
        repeats=args.repeats or (5 if on_cpu else 50),
        threads=args.threads,
        device=args.device,
        gemm_size=args.gemm_size or default_gemm_size(args.device),
    )
    worker = tuple(args.worker.split("-")) if args.worker else None
    return settings, worker


def main(argv: list[str] | None = None) -> None:
    settings, worker = parse_settings(argv)
    if worker:
        phase, precision = worker
        print(json.dumps(asdict(MEASURE[phase][0](settings, precision))))
        return
    for index in range(len(settings.img_sizes)):
        one_size = settings.at(index)
        results = {}
        for phase in PHASES:
            for precision in PRECISIONS:
                print(f"# {phase} {precision} at {one_size.img_sizes[0]} px", file=sys.stderr, flush=True)
                job = f"{phase}-{precision}"
                results[phase, precision] = measure_in_subprocess(__file__, job, one_size, MEASURE[phase][1])
        train = {precision: results["train", precision] for precision in PRECISIONS}
        infer = {precision: results["infer", precision] for precision in PRECISIONS}
        for line in figure_lines(one_size, train, infer):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
