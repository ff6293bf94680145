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
import time
from dataclasses import asdict, dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import (  # noqa: E402
    MIB,
    PRECISIONS,
    gemm_flops_per_s,
    peak_rss_bytes,
    run_worker,
    settings_flags,
    synchronize,
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
class TrainMeasurement:
    """Raw training results of one image size and precision, measured in one process."""

    step_times_s: list[float]
    cpu_share: float
    flops_per_step: int
    gemm_flops_per_s: float
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None


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


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def measure_training(settings: Settings, precision: str) -> TrainMeasurement:
    """GEMM rate, FLOPs per step (first warmup step) and timed training steps for one size and precision."""
    from sonofm.tasks.optim import OptimConfig, build_optimizer

    img_size, batch_size = settings.single_size()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    gemm_rate = gemm_flops_per_s(settings.gemm_size, PRECISIONS[precision], device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model = build_model(settings, img_size, device)
    model.train()
    optimizer = build_optimizer(model, OptimConfig(layer_decay=0.65))  # as when fine-tuning pretrained weights
    images = torch.randn(batch_size, 3, img_size, img_size, device=device)
    masks = torch.randint(0, NUM_CLASSES, (batch_size, img_size, img_size), device=device)

    def train_step() -> None:
        with autocast(device, precision):
            loss = model.loss(model(images), masks)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        train_step()
    for _ in range(settings.warmup - 1):
        train_step()
    synchronize(device)

    step_times = []
    cpu_start = time.process_time()
    for _ in range(settings.steps):
        start = time.perf_counter()
        train_step()
        synchronize(device)
        step_times.append(time.perf_counter() - start)
    cpu_share = (time.process_time() - cpu_start) / (sum(step_times) * settings.threads)

    cuda_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return TrainMeasurement(step_times, cpu_share, counter.get_total_flops(), gemm_rate, peak_rss_bytes(), cuda_peak)


def measure_inference(settings: Settings, precision: str) -> InferMeasurement:
    """Latency of ``model.predict`` on one image (eval mode, inference mode) for one size and precision."""
    img_size, _ = settings.single_size()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model = build_model(settings, img_size, device)
    model.eval()
    image = torch.randn(1, 3, img_size, img_size, device=device)

    def predict() -> None:
        with autocast(device, precision):
            model.predict(image)

    latencies = []
    with torch.inference_mode():
        for _ in range(settings.warmup):
            predict()
        synchronize(device)
        cpu_start = time.process_time()
        for _ in range(settings.repeats):
            start = time.perf_counter()
            predict()
            synchronize(device)
            latencies.append(time.perf_counter() - start)
    cpu_share = (time.process_time() - cpu_start) / (sum(latencies) * settings.threads)

    cuda_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return InferMeasurement(latencies, cpu_share, peak_rss_bytes(), cuda_peak)


MEASURE = {"train": (measure_training, TrainMeasurement), "infer": (measure_inference, InferMeasurement)}


def worker_args(settings: Settings, phase: str, precision: str) -> list[str]:
    """The flags that make this script measure ``phase`` in ``precision`` under ``settings`` and print JSON."""
    return ["--worker", f"{phase}-{precision}", *settings_flags(settings)]


def measure_in_subprocess(settings: Settings, phase: str, precision: str) -> TrainMeasurement | InferMeasurement:
    """Run ``measure_training`` or ``measure_inference`` in a fresh interpreter, so its peak memory is its own."""
    measurement_type = MEASURE[phase][1]
    return measurement_type(**run_worker(os.path.abspath(__file__), worker_args(settings, phase, precision)))


def figure_lines(
    settings: Settings, train: dict[str, TrainMeasurement], infer: dict[str, InferMeasurement]
) -> list[dict]:
    """One JSON-ready dict per figure of one image size: training figures per precision, inference figures per
    precision, then the bf16/fp32 ratios; all from the same run."""
    img_size, batch_size = settings.single_size()
    def line(batch: int, precision: str, metric: str, value: float, unit: str, **extra) -> dict:
        """One figure; ``batch`` is the training batch size, or 1 for inference."""
        return {"benchmark": "segmentation_throughput", "model": settings.model, "head": settings.head,
                "img_size": img_size, "batch_size": batch, "device": settings.device, "threads": settings.threads,
                "precision": precision, "metric": metric, "value": value, "unit": unit, **extra}

    lines = []
    images_per_s = {}
    for precision, m in train.items():
        mean_step = sum(m.step_times_s) / len(m.step_times_s)
        images_per_s[precision] = batch_size / mean_step
        model_rate = m.flops_per_step / mean_step
        step_spread = {"steps": len(m.step_times_s), "min": round(min(m.step_times_s), 4),
                       "max": round(max(m.step_times_s), 4)}
        lines += [
            line(batch_size, precision, "images_per_s", round(images_per_s[precision], 3), "img/s"),
            line(batch_size, precision, "step_time_s", round(mean_step, 4), "s", **step_spread),
            line(batch_size, precision, "flops_per_step", m.flops_per_step, "FLOP"),
            line(batch_size, precision, "model_flops_per_s", round(model_rate / 1e9, 2), "GFLOP/s"),
            line(batch_size, precision, "gemm_flops_per_s", round(m.gemm_flops_per_s / 1e9, 2), "GFLOP/s",
                 gemm_size=settings.gemm_size),
            line(batch_size, precision, "matmul_efficiency", round(model_rate / m.gemm_flops_per_s, 3), "ratio",
                 baseline=f"gemm_{precision}_{settings.gemm_size}"),
            line(batch_size, precision, "peak_rss", round(m.peak_rss_bytes / MIB, 1), "MiB"),
        ]
        if settings.device == "cpu":
            lines.append(line(batch_size, precision, "cpu_share", round(m.cpu_share, 3), "ratio"))
        if m.cuda_max_allocated_bytes is not None:
            cuda_peak = round(m.cuda_max_allocated_bytes / MIB, 1)
            lines.append(line(batch_size, precision, "cuda_max_memory_allocated", cuda_peak, "MiB"))

    latency_ms = {}
    for precision, m in infer.items():
        latency_ms[precision] = 1e3 * sum(m.latencies_s) / len(m.latencies_s)
        spread = {"repeats": len(m.latencies_s), "min": round(1e3 * min(m.latencies_s), 3),
                  "max": round(1e3 * max(m.latencies_s), 3)}
        median_ms = 1e3 * statistics.median(m.latencies_s)
        lines += [
            line(1, precision, "infer_latency_ms", round(latency_ms[precision], 3), "ms", **spread),
            line(1, precision, "infer_latency_median_ms", round(median_ms, 3), "ms", repeats=len(m.latencies_s)),
            line(1, precision, "infer_peak_rss", round(m.peak_rss_bytes / MIB, 1), "MiB"),
        ]
        if settings.device == "cpu":
            lines.append(line(1, precision, "infer_cpu_share", round(m.cpu_share, 3), "ratio"))
        if m.cuda_max_allocated_bytes is not None:
            cuda_peak = round(m.cuda_max_allocated_bytes / MIB, 1)
            lines.append(line(1, precision, "infer_cuda_max_memory_allocated", cuda_peak, "MiB"))

    speedup = images_per_s["bf16"] / images_per_s["fp32"]
    lines.append(line(batch_size, "bf16", "bf16_speedup_vs_fp32", round(speedup, 3), "x",
                      baseline="fp32 images_per_s"))
    infer_speedup = latency_ms["fp32"] / latency_ms["bf16"]
    lines.append(line(1, "bf16", "bf16_infer_speedup_vs_fp32", round(infer_speedup, 3), "x",
                      baseline="fp32 infer_latency_ms"))
    return lines


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
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gemm-size", type=int, help="side of the reference GEMM; default 4096 on CPU, 8192 on CUDA")
    jobs = [f"{phase}-{precision}" for phase in PHASES for precision in PRECISIONS]
    parser.add_argument("--worker", choices=jobs, help=argparse.SUPPRESS)
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
    if warmup < 1:
        parser.error("--warmup must be at least 1: the first warmup step counts FLOPs")
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
        gemm_size=args.gemm_size or (4096 if on_cpu else 8192),
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
                results[phase, precision] = measure_in_subprocess(one_size, phase, precision)
        train = {precision: results["train", precision] for precision in PRECISIONS}
        infer = {precision: results["infer", precision] for precision in PRECISIONS}
        for line in figure_lines(one_size, train, infer):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
