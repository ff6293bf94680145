"""Automask throughput of an A-SAM with its class prompter: images/s and peak memory, fp32 against bf16.

One timed batch = ``AdaptedSam.predict`` (image encoder, prompter, one mask-decoder pass for every class) on a fixed
random batch at the model's input size, then ``anatomy_map`` of every image at a typical original frame size
(640 x 480: bilinear resize of the class scores, argmax, confidence): what ``sonofm sam automask`` does per batch
apart from decoding and writing PNGs. The model is a random-init SAM of ``--sam-type`` (weights do not change the
speed) adapted by each of ``--adapters`` (SAMUS's encoder, 8-px tokens, or LoRA rank 4 on SAM's, 16-px tokens; SAMUS
runs at 64-512 px only) with the default prompter (2 tokens per class, 4 blocks) for 2 anatomy classes. Every
(adapter, input size, precision) runs in its own subprocess, so its peak memory is its own; each also times a large
GEMM in the same dtype and counts the FLOPs of a batch, giving the fraction of the machine's matmul rate the pipeline
reaches.

    .venv/bin/python benchmarks/automask_throughput.py    # vit_b, SAMUS at 256, LoRA at 256 and 1024, CPU or CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import (  # noqa: E402
    PRECISIONS,
    add_machine_flags,
    add_worker_flag,
    autocast,
    check_warmup,
    cuda_peak_bytes,
    default_gemm_size,
    figure_line,
    gemm_flops_per_s,
    measure_in_subprocess,
    peak_rss_bytes,
    reset_cuda_peak,
    start_worker,
    synchronize,
    time_calls,
    usage_lines,
)
from segmentation_throughput import int_list  # noqa: E402

CLASSES = ["background", "anatomy_1", "anatomy_2"]
ORIGINAL_SIZE = (640, 480)  # (width, height) the id maps are written at
DEFAULT_BATCH = {("cpu", 256): 4, ("cpu", 1024): 1, ("cuda", 256): 32, ("cuda", 1024): 4}


@dataclass
class Settings:
    """What one run measures. ``batch_sizes[i]`` goes with ``img_sizes[i]``; a worker measures one size (``at``)."""

    sam_type: str
    adapters: tuple[str, ...]
    img_sizes: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    steps: int
    warmup: int
    threads: int
    device: str
    gemm_size: int

    def at(self, index: int, adapter: str) -> Settings:
        return replace(self, adapters=(adapter,), img_sizes=(self.img_sizes[index],),
                       batch_sizes=(self.batch_sizes[index],))


@dataclass
class AutomaskMeasurement:
    batch_times_s: list[float]
    cpu_share: float
    flops_per_batch: int
    gemm_flops_per_s: float
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None


def measure(settings: Settings, precision: str) -> AutomaskMeasurement:
    """GEMM rate, FLOPs of one batch, then timed automask batches, for the single size of ``settings``."""
    from sonofm.sam import AdaptedSam, build_sam
    from sonofm.tasks.sam.automask import anatomy_map

    (adapter,), (img_size,), (batch_size,) = settings.adapters, settings.img_sizes, settings.batch_sizes
    device = start_worker(settings)
    gemm_rate = gemm_flops_per_s(settings.gemm_size, PRECISIONS[precision], device)
    reset_cuda_peak(device)
    model = AdaptedSam(build_sam(settings.sam_type, img_size, samus=adapter == "samus"), CLASSES, adapter, lora_rank=4)
    model.add_prompter()
    model = model.to(device).eval()
    images = torch.randn(batch_size, 3, img_size, img_size, device=device)

    def batch(precision: str = precision) -> None:
        with autocast(device, precision):
            scores = model.predict(images).float()
        for score in scores:
            anatomy_map(score, ORIGINAL_SIZE)

    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:  # in fp32: the counter trips over SAM's mixed-dtype einsum
            batch("fp32")
        for _ in range(settings.warmup):
            batch()
        synchronize(device)
        times, cpu_share = time_calls(batch, device, settings.steps, settings.threads)
    return AutomaskMeasurement(times, cpu_share, counter.get_total_flops(), gemm_rate, peak_rss_bytes(),
                               cuda_peak_bytes(device))


def figure_lines(settings: Settings, results: dict[str, AutomaskMeasurement]) -> list[dict]:
    """Per precision: images/s, batch time, FLOPs, matmul efficiency, memory; then bf16 / fp32 images/s."""
    (adapter,), (img_size,), (batch_size,) = settings.adapters, settings.img_sizes, settings.batch_sizes
    common = {"benchmark": "automask_throughput", "sam_type": settings.sam_type, "adapter": adapter,
              "img_size": img_size, "batch_size": batch_size, "device": settings.device, "threads": settings.threads}
    lines, rate = [], {}
    for precision, m in results.items():
        mean = sum(m.batch_times_s) / len(m.batch_times_s)
        rate[precision] = batch_size / mean
        model_rate = m.flops_per_batch / mean
        lines += [
            figure_line(common, precision, "images_per_s", round(rate[precision], 3), "img/s"),
            figure_line(common, precision, "batch_time_s", round(mean, 4), "s", batches=len(m.batch_times_s),
                        min=round(min(m.batch_times_s), 4), max=round(max(m.batch_times_s), 4)),
            figure_line(common, precision, "flops_per_image", m.flops_per_batch // batch_size, "FLOP"),
            figure_line(common, precision, "matmul_efficiency", round(model_rate / m.gemm_flops_per_s, 3), "ratio",
                        baseline=f"gemm_{precision}_{settings.gemm_size}"),
            *usage_lines(common, precision, m, settings.device),
        ]
    speedup = round(rate["bf16"] / rate["fp32"], 3)
    return [*lines, figure_line(common, "bf16", "bf16_speedup_vs_fp32", speedup, "x", baseline="fp32 images_per_s")]


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, str | None]:
    """Flags -> settings with device defaults, and the worker's precision, if this is a worker."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-type", default="vit_b", help="vit_b (default), vit_l, vit_h or vit_tiny")
    parser.add_argument("--adapters", type=lambda text: tuple(text.split(",")), default=("samus", "lora"),
                        help="comma-separated: samus, lora (default both)")
    parser.add_argument("--img-sizes", type=int_list, default=(256, 1024), help="comma-separated; default 256,1024")
    parser.add_argument("--batch-sizes", type=int_list,
                        help="batch per input size (one value: all); default CPU 4 at 256 and 1 at 1024, CUDA 32 and 4")
    parser.add_argument("--steps", type=int, help="timed batches; default 3 on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches after the FLOP-counting one (>= 1)")
    add_machine_flags(parser)
    add_worker_flag(parser, list(PRECISIONS))
    args = parser.parse_args(argv)
    check_warmup(parser, args.warmup)
    batch_sizes = args.batch_sizes or tuple(DEFAULT_BATCH.get((args.device, size), 1) for size in args.img_sizes)
    if len(batch_sizes) == 1:
        batch_sizes *= len(args.img_sizes)
    if len(batch_sizes) != len(args.img_sizes):
        parser.error("--batch-sizes needs one value or one per input size")
    settings = Settings(
        sam_type=args.sam_type, adapters=args.adapters, img_sizes=args.img_sizes, batch_sizes=batch_sizes,
        steps=args.steps or (3 if args.device == "cpu" else 20), warmup=args.warmup, threads=args.threads,
        device=args.device, gemm_size=args.gemm_size or default_gemm_size(args.device),
    )
    return settings, args.worker


def main(argv: list[str] | None = None) -> None:
    settings, worker = parse_settings(argv)
    if worker:
        print(json.dumps(asdict(measure(settings, worker))))
        return
    from sonofm.errors import SonofmError
    from sonofm.sam.registry import check_img_size

    for adapter in settings.adapters:
        for index, img_size in enumerate(settings.img_sizes):
            try:
                check_img_size(img_size, samus=adapter == "samus")
            except SonofmError as error:
                print(f"# skipped {adapter} at {img_size} px: {error}", file=sys.stderr, flush=True)
                continue
            one_run = settings.at(index, adapter)
            results = {}
            for precision in PRECISIONS:
                print(f"# automask {adapter} {precision} at {img_size} px", file=sys.stderr, flush=True)
                results[precision] = measure_in_subprocess(__file__, precision, one_run, AutomaskMeasurement)
            for line in figure_lines(one_run, results):
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
