"""MIM pretraining throughput and peak memory of a MaskedImageModel (USFM dual masking), fp32 against bf16 autocast.

One training step = ``MaskedImageModel`` forward (band-stop FFT filter, random block mask, encoder, pixel-shuffle
decoder, pixel and frequency losses) + backward + AdamW step (``build_optimizer`` with pretraining's settings: no layer
decay) + ``zero_grad``, on a fixed random batch; the masks are re-drawn every step, as in training. The model is
built as ``sonofm pretrain mim`` builds it (``build_mim_model``: USFM ViTs with one shared relative position table).
Each precision runs in its own subprocess so that its peak memory is its own; that subprocess also times a large GEMM
in the same dtype (the attainable matmul rate of this machine) and counts the model's FLOPs per step with
``FlopCounterMode``. The parent prints one JSON line per figure, ratios included.

    .venv/bin/python benchmarks/mim_throughput.py            # ViT-B/16, 224 px, both branches, CPU or CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

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

DEFAULT_MASK_PATCH = 32  # MimConfig's default: 32 px blocks


@dataclass
class Settings:
    """What one run measures; the defaults depend on the device (see ``parse_settings``).

    ``spatial`` / ``frequency``: which masking branches are on (``--no-spatial`` / ``--no-frequency`` turn one off).
    """

    model: str
    img_size: int
    batch_size: int
    steps: int
    warmup: int
    threads: int
    device: str
    gemm_size: int
    mask_patch: int
    spatial: bool
    frequency: bool

    def mim_config(self):
        """The ``MimConfig`` of this run: pretraining's defaults with this run's mask block size and branches."""
        from sonofm.methods.mim.model import MimConfig

        return MimConfig(mask_patch=self.mask_patch, spatial=self.spatial, frequency=self.frequency)


@dataclass
class Measurement:
    """Raw results of one precision, measured in one process."""

    step_times_s: list[float]
    cpu_share: float
    flops_per_step: int
    gemm_flops_per_s: float
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None


def build_model(settings: Settings, device: torch.device):
    """``MaskedImageModel`` and its AdamW, exactly as ``sonofm pretrain mim`` builds them (drop path 0.1, shared
    relative position table for USFM ViTs, lr 2e-4, weight decay 0.05, no layer decay)."""
    from sonofm.tasks.optim import build_optimizer
    from sonofm.tasks.pretrain_mim import MimPretrainConfig, build_mim_model

    config = MimPretrainConfig(model=settings.model, img_size=settings.img_size, mim=settings.mim_config())
    model = build_mim_model(config).to(device)
    return model, build_optimizer(model, config.optim)


def measure(settings: Settings, precision: str) -> Measurement:
    """GEMM rate, FLOPs per step (first warmup step) and timed pretraining steps for one precision."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    dtype = PRECISIONS[precision]
    gemm_rate = gemm_flops_per_s(settings.gemm_size, dtype, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model, optimizer = build_model(settings, device)
    model.train()
    images = torch.randn(settings.batch_size, 3, settings.img_size, settings.img_size, device=device)

    def train_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(images)["loss"]  # fresh band-stop and block masks from the global RNG every step
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
    """The flags that make this script measure ``precision`` under ``settings`` and print the result as JSON.

    ``settings_flags`` writes the branch switches as ``--spatial True`` / ``--frequency False``; the parser takes
    that spelling too (hidden options beside ``--no-spatial`` / ``--no-frequency``).
    """
    return ["--worker", precision, *settings_flags(settings)]


def measure_in_subprocess(settings: Settings, precision: str) -> Measurement:
    """Run ``measure`` in a fresh interpreter so each precision's peak memory is measured on its own."""
    return Measurement(**run_worker(os.path.abspath(__file__), worker_args(settings, precision)))


def figure_lines(settings: Settings, results: dict[str, Measurement]) -> list[dict]:
    """One JSON-ready dict per figure: per-precision figures, then the bf16/fp32 ratio; all from the same run."""
    common = {
        "benchmark": "mim_throughput",
        "model": settings.model,
        "img_size": settings.img_size,
        "batch_size": settings.batch_size,
        "mask_patch": settings.mask_patch,
        "spatial": settings.spatial,
        "frequency": settings.frequency,
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


def bool_text(text: str) -> bool:
    """``"True"`` / ``"False"`` (how ``settings_flags`` writes booleans) -> bool, for argparse."""
    if text not in ("True", "False"):
        raise argparse.ArgumentTypeError(f"expected True or False, got '{text}'")
    return text == "True"


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, str | None]:
    """Command-line flags -> settings (device-dependent defaults filled in) and the worker precision, if any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="usfm_vit_base_patch16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, help="default 16 on CPU, 64 on CUDA")
    parser.add_argument("--steps", type=int, help="timed steps; default 10 on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (>= 1; the first also counts FLOPs)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gemm-size", type=int, help="side of the reference GEMM; default 4096 on CPU, 8192 on CUDA")
    parser.add_argument("--mask-patch", type=int, default=DEFAULT_MASK_PATCH,
                        help=f"side of the hidden blocks in px (default {DEFAULT_MASK_PATCH}); must divide the image "
                             "size and be a multiple of the encoder's patch size")
    parser.add_argument("--no-spatial", dest="spatial", action="store_false",
                        help="no block masking: measure the frequency (band-stop) branch alone")
    parser.add_argument("--no-frequency", dest="frequency", action="store_false",
                        help="no band-stop filter and no frequency loss: measure the spatial branch alone")
    # The worker's spelling of the two switches (see worker_args).
    parser.add_argument("--spatial", dest="spatial", type=bool_text, help=argparse.SUPPRESS)
    parser.add_argument("--frequency", dest="frequency", type=bool_text, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=tuple(PRECISIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    on_cpu = args.device == "cpu"
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first warmup step counts FLOPs")
    if not (args.spatial or args.frequency):
        parser.error("--no-spatial and --no-frequency together leave nothing to train")
    settings = Settings(
        model=args.model,
        img_size=args.img_size,
        batch_size=args.batch_size or (16 if on_cpu else 64),
        steps=args.steps or (10 if on_cpu else 20),
        warmup=args.warmup,
        threads=args.threads,
        device=args.device,
        gemm_size=args.gemm_size or (4096 if on_cpu else 8192),
        mask_patch=args.mask_patch,
        spatial=args.spatial,
        frequency=args.frequency,
    )
    from sonofm.errors import SonofmError

    try:  # fail here, not in both subprocesses: image size, mask block size and rings must fit together
        settings.mim_config().validate(settings.img_size)
    except SonofmError as error:
        parser.error(str(error))
    return settings, args.worker


def main(argv: list[str] | None = None) -> None:
    settings, worker = parse_settings(argv)
    if worker:
        print(json.dumps(asdict(measure(settings, worker))))
        return
    results = {}
    for precision in PRECISIONS:
        print(f"# {precision}", file=sys.stderr, flush=True)
        results[precision] = measure_in_subprocess(settings, precision)
    for line in figure_lines(settings, results):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
