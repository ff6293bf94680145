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
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
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

NUM_CLASSES = 3


@dataclass
class Settings:
    """What one run measures; the defaults depend on the device (see ``parse_settings``)."""

    model: str
    img_size: int
    batch_size: int
    steps: int
    warmup: int
    threads: int
    device: str
    gemm_size: int


@dataclass
class Measurement:
    """Raw results of one precision, measured in one process."""

    step_times_s: list[float]
    cpu_share: float
    flops_per_step: int
    gemm_flops_per_s: float
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None


def measure(settings: Settings, precision: str) -> Measurement:
    """GEMM rate, FLOPs per step (first warmup step) and timed training steps for one precision."""
    from sonofm.models import create_backbone
    from sonofm.models.classifier import ImageClassifier
    from sonofm.tasks.optim import OptimConfig, build_optimizer

    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    dtype = PRECISIONS[precision]
    gemm_rate = gemm_flops_per_s(settings.gemm_size, dtype, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model = ImageClassifier(create_backbone(settings.model, img_size=settings.img_size), NUM_CLASSES).to(device)
    model.train()
    optimizer = build_optimizer(model, OptimConfig(layer_decay=0.65))  # as when fine-tuning pretrained weights
    images = torch.randn(settings.batch_size, 3, settings.img_size, settings.img_size, device=device)
    labels = torch.randint(0, NUM_CLASSES, (settings.batch_size,), device=device)

    def train_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(images), labels)
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
    return Measurement(step_times, cpu_share, counter.get_total_flops(), gemm_rate, peak_rss_bytes(), cuda_peak)


def worker_args(settings: Settings, precision: str) -> list[str]:
    """The flags that make this script measure ``precision`` under ``settings`` and print the result as JSON."""
    return ["--worker", precision, *settings_flags(settings)]


def measure_in_subprocess(settings: Settings, precision: str) -> Measurement:
    """Run ``measure`` in a fresh interpreter so each precision's peak memory is measured on its own."""
    return Measurement(**run_worker(os.path.abspath(__file__), worker_args(settings, precision)))


def figure_lines(settings: Settings, results: dict[str, Measurement]) -> list[dict]:
    """One JSON-ready dict per figure: per-precision figures, then the bf16/fp32 ratio; all from the same run."""
    common = {
        "benchmark": "finetune_throughput",
        "model": settings.model,
        "img_size": settings.img_size,
        "batch_size": settings.batch_size,
        "device": settings.device,
        "threads": settings.threads,
    }

    def line(precision: str, metric: str, value: float, unit: str, **extra) -> dict:
        return {**common, "precision": precision, "metric": metric, "value": value, "unit": unit, **extra}

    lines = []
    images_per_s = {}
    for precision, m in results.items():
        mean_step = sum(m.step_times_s) / len(m.step_times_s)
        images_per_s[precision] = settings.batch_size / mean_step
        model_rate = m.flops_per_step / mean_step
        step_spread = {"steps": len(m.step_times_s), "min": round(min(m.step_times_s), 4),
                       "max": round(max(m.step_times_s), 4)}
        lines += [
            line(precision, "images_per_s", round(images_per_s[precision], 3), "img/s"),
            line(precision, "step_time_s", round(mean_step, 4), "s", **step_spread),
            line(precision, "flops_per_step", m.flops_per_step, "FLOP"),
            line(precision, "model_flops_per_s", round(model_rate / 1e9, 2), "GFLOP/s"),
            line(precision, "gemm_flops_per_s", round(m.gemm_flops_per_s / 1e9, 2), "GFLOP/s",
                 gemm_size=settings.gemm_size),
            line(precision, "matmul_efficiency", round(model_rate / m.gemm_flops_per_s, 3), "ratio",
                 baseline=f"gemm_{precision}_{settings.gemm_size}"),
            line(precision, "peak_rss", round(m.peak_rss_bytes / MIB, 1), "MiB"),
        ]
        if settings.device == "cpu":
            lines.append(line(precision, "cpu_share", round(m.cpu_share, 3), "ratio"))
        if m.cuda_max_allocated_bytes is not None:
            cuda_peak = round(m.cuda_max_allocated_bytes / MIB, 1)
            lines.append(line(precision, "cuda_max_memory_allocated", cuda_peak, "MiB"))
    speedup = images_per_s["bf16"] / images_per_s["fp32"]
    lines.append(line("bf16", "bf16_speedup_vs_fp32", round(speedup, 3), "x", baseline="fp32 images_per_s"))
    return lines


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, str | None]:
    """Command-line flags -> settings (device-dependent defaults filled in) and the worker precision, if any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="usfm_vit_base_patch16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, help="default 16 on CPU, 64 on CUDA")
    parser.add_argument("--steps", type=int, help="timed steps; default 6 on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (>= 1; the first also counts FLOPs)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gemm-size", type=int, help="side of the reference GEMM; default 4096 on CPU, 8192 on CUDA")
    parser.add_argument("--worker", choices=tuple(PRECISIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    on_cpu = args.device == "cpu"
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first warmup step counts FLOPs")
    settings = Settings(
        model=args.model,
        img_size=args.img_size,
        batch_size=args.batch_size or (16 if on_cpu else 64),
        steps=args.steps or (6 if on_cpu else 20),
        warmup=args.warmup,
        threads=args.threads,
        device=args.device,
        gemm_size=args.gemm_size or (4096 if on_cpu else 8192),
    )
    return settings, args.worker


def main(argv: list[str] | None = None) -> None:
    settings, worker = parse_settings(argv)
    if worker:
        print(json.dumps(asdict(measure(settings, worker))))
        return
    results = {precision: measure_in_subprocess(settings, precision) for precision in PRECISIONS}
    for line in figure_lines(settings, results):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
