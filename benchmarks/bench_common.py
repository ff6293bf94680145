"""Helpers shared by the benchmark scripts: flags and settings, the worker subprocess, the timed training loop and
the figures every training benchmark prints.

The scripts run as ``.venv/bin/python benchmarks/<script>.py`` (or are imported by name in the smoke tests) and put
their own directory on ``sys.path`` to import this module.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Self, TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
MIB = 2**20


class RunSettings(Protocol):
    """The settings fields every measuring subprocess reads (each script's ``Settings`` has them)."""

    steps: int
    warmup: int
    threads: int
    device: str
    gemm_size: int


class UsageMeasurement(Protocol):
    """The resource figures every measurement records."""

    cpu_share: float
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None


S = TypeVar("S", bound=RunSettings)
M = TypeVar("M")
Loss = Callable[[], torch.Tensor]  # the loss of a fixed batch, computed afresh at each call


# Flags and settings


def add_machine_flags(parser: argparse.ArgumentParser) -> None:
    """``--threads``, ``--device`` and ``--gemm-size``, the same in every script."""
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gemm-size", type=int, help="side of the reference GEMM; default 4096 on CPU, 8192 on CUDA")


def add_training_flags(parser: argparse.ArgumentParser, cpu_steps: int) -> None:
    """The flags of a single-size training benchmark (model, image size, batch, steps, warmup) and the machine's."""
    parser.add_argument("--model", default="usfm_vit_base_patch16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, help="default 16 on CPU, 64 on CUDA")
    parser.add_argument("--steps", type=int, help=f"timed steps; default {cpu_steps} on CPU, 20 on CUDA")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (>= 1; the first also counts FLOPs)")
    add_machine_flags(parser)


def add_worker_flag(parser: argparse.ArgumentParser, jobs: list[str] | tuple[str, ...]) -> None:
    """The hidden ``--worker JOB`` that ``worker_args`` passes to a measuring subprocess."""
    parser.add_argument("--worker", choices=jobs, help=argparse.SUPPRESS)


def add_precisions_flag(parser: argparse.ArgumentParser) -> None:
    """``--precisions``: which of fp32 / bf16 to measure; default both where bf16 is native (see
    ``resolve_precisions``)."""
    parser.add_argument("--precisions", nargs="+", choices=tuple(PRECISIONS),
                        help="default: fp32 and bf16 on CUDA and on CPUs with AMX / AVX512-BF16, else fp32 alone")


def resolve_precisions(chosen: list[str] | None, device: str) -> list[str]:
    """``chosen``, or both precisions where bf16 runs natively, else fp32 alone (without AMX / AVX512-BF16, CPU
    bf16 convolutions fall back to a reference kernel that is far slower than fp32, which measures nothing)."""
    if chosen:
        return list(chosen)
    from sonofm.engine.precision import cpu_has_fast_bf16

    if device == "cuda" or cpu_has_fast_bf16():
        return list(PRECISIONS)
    print("# this CPU has no native bf16 (AMX / AVX512-BF16): measuring fp32 only; --precisions fp32 bf16 forces"
          " both", file=sys.stderr)
    return ["fp32"]


def check_warmup(parser: argparse.ArgumentParser, warmup: int) -> None:
    """Refuse fewer than one warmup step: the first one counts the FLOPs."""
    if warmup < 1:
        parser.error("--warmup must be at least 1: the first warmup step counts FLOPs")


def default_gemm_size(device: str) -> int:
    """Side of the reference GEMM: 4096 on CPU, 8192 on CUDA."""
    return 4096 if device == "cpu" else 8192


@dataclass
class TrainingSettings:
    """What a single-size training run measures; the defaults depend on the device (see ``from_flags``)."""

    model: str
    img_size: int
    batch_size: int
    steps: int
    warmup: int
    threads: int
    device: str
    gemm_size: int

    @classmethod
    def from_flags(cls, parser: argparse.ArgumentParser, args: argparse.Namespace, cpu_steps: int, **extra) -> Self:
        """Settings from the flags of ``add_training_flags`` with device defaults filled in (batch 16 on CPU, 64 on
        CUDA; ``cpu_steps`` or 20 steps); ``extra``: a subclass's own fields."""
        check_warmup(parser, args.warmup)
        on_cpu = args.device == "cpu"
        return cls(
            model=args.model,
            img_size=args.img_size,
            batch_size=args.batch_size or (16 if on_cpu else 64),
            steps=args.steps or (cpu_steps if on_cpu else 20),
            warmup=args.warmup,
            threads=args.threads,
            device=args.device,
            gemm_size=args.gemm_size or default_gemm_size(args.device),
            **extra,
        )


# The worker subprocess


def settings_flags(settings) -> list[str]:
    """A settings dataclass as command-line flags: ``field_name=value`` -> ``--field-name value``.

    Tuples and lists become comma-separated values (``(224, 512)`` -> ``224,512``).
    """
    args = []
    for key, value in asdict(settings).items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def worker_args(job: str, settings) -> list[str]:
    """The flags that make a script run worker ``job`` under ``settings`` and print its measurement as JSON."""
    return ["--worker", job, *settings_flags(settings)]


def run_worker(script: str, args: list[str]) -> dict:
    """Run ``script`` with ``args`` in a fresh interpreter; its last stdout line, parsed as JSON.

    A fresh process per measurement keeps each peak memory (``ru_maxrss``, CUDA peaks) its own.
    """
    command = [sys.executable, script, *args]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_in_subprocess(script: str, job: str, settings, measurement_type: type[M]) -> M:
    """Run worker ``job`` of ``script`` under ``settings`` in a fresh interpreter; its measurement."""
    return measurement_type(**run_worker(os.path.abspath(script), worker_args(job, settings)))


# Measuring in a worker


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cpu_flags() -> str:
    """The vector extensions that decide CPU matmul speed (AMX, AVX512-BF16, AVX512, AVX2)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    found = [name for name in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f" {name}" in flags]
    return ",".join(found) or "none of amx/avx512/avx2"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on CUDA; nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_cuda_peak(device: torch.device) -> None:
    """Start CUDA's peak memory count afresh (nothing to do on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_bytes(device: torch.device) -> int | None:
    """CUDA's peak allocated memory since the last ``reset_cuda_peak``; None on CPU."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast for ``"bf16"``; a disabled autocast (plain fp32) for ``"fp32"``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def start_worker(settings: RunSettings) -> torch.device:
    """Set this process's thread count and seed 0; the device to measure on."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    return torch.device(settings.device)


def gemm_flops_per_s(size: int, dtype: torch.dtype, device: torch.device, repeats: int = 3) -> float:
    """Best FLOP/s of a ``size``-cubed matmul in ``dtype`` over ``repeats`` timed runs (after one untimed run)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    torch.mm(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def time_calls(call: Callable[[], None], device: torch.device, repeats: int, threads: int) -> tuple[list[float], float]:
    """Wall time of each of ``repeats`` calls (kernels waited for), and process CPU time / (wall time x threads)."""
    times = []
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    cpu_share = (time.process_time() - cpu_start) / (sum(times) * threads)
    return times, cpu_share


@dataclass
class TrainMeasurement:
    """Raw training results of one precision, measured in one process."""

    step_times_s: list[float]
    cpu_share: float
    flops_per_step: int
    gemm_flops_per_s: float
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None


def training_step(
    loss: Loss, optimizer: torch.optim.Optimizer, device: torch.device, precision: str
) -> Callable[[], None]:
    """One training step: ``loss()`` under ``precision``'s autocast, backward, optimiser step, gradients cleared."""

    def step() -> None:
        with autocast(device, precision):
            value = loss()
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_training_steps(
    settings: S, precision: str, build: Callable[[S, torch.device], tuple[Loss, torch.optim.Optimizer]]
) -> TrainMeasurement:
    """GEMM rate, FLOPs per step (first warmup step) and timed training steps for one precision, in this process.

    ``build(settings, device)`` builds the model, its batch and its optimiser and returns the loss of that batch (a
    function) and the optimiser; it runs after the GEMM, whose buffers are freed by then, so the memory peaks are the
    model's.
    """
    device = start_worker(settings)
    gemm_rate = gemm_flops_per_s(settings.gemm_size, PRECISIONS[precision], device)
    reset_cuda_peak(device)
    train_step = training_step(*build(settings, device), device, precision)
    with FlopCounterMode(display=False) as counter:
        train_step()
    for _ in range(settings.warmup - 1):
        train_step()
    synchronize(device)
    step_times, cpu_share = time_calls(train_step, device, settings.steps, settings.threads)
    return TrainMeasurement(
        step_times, cpu_share, counter.get_total_flops(), gemm_rate, peak_rss_bytes(), cuda_peak_bytes(device)
    )


# Figures


def figure_line(common: dict, precision: str, metric: str, value: float, unit: str, **extra) -> dict:
    """One JSON-ready figure: the run's ``common`` fields, then precision, metric, value, unit and any ``extra``."""
    return {**common, "precision": precision, "metric": metric, "value": value, "unit": unit, **extra}


def images_per_s(m: TrainMeasurement, batch_size: int) -> float:
    """Batch size / mean time of a timed step."""
    return batch_size / (sum(m.step_times_s) / len(m.step_times_s))


def usage_lines(common: dict, precision: str, m: UsageMeasurement, device: str, prefix: str = "") -> list[dict]:
    """Peak RSS, then the CPU share on CPU and CUDA's peak on CUDA; ``prefix`` goes before each metric name."""
    lines = [figure_line(common, precision, f"{prefix}peak_rss", round(m.peak_rss_bytes / MIB, 1), "MiB")]
    if device == "cpu":
        lines.append(figure_line(common, precision, f"{prefix}cpu_share", round(m.cpu_share, 3), "ratio"))
    if m.cuda_max_allocated_bytes is not None:
        cuda_peak = round(m.cuda_max_allocated_bytes / MIB, 1)
        lines.append(figure_line(common, precision, f"{prefix}cuda_max_memory_allocated", cuda_peak, "MiB"))
    return lines


def training_figure_lines(
    common: dict, results: dict[str, TrainMeasurement], batch_size: int, gemm_size: int, device: str
) -> list[dict]:
    """The training figures of each precision in ``results``: speed, FLOPs, matmul efficiency, memory, CPU share."""
    lines = []
    for precision, m in results.items():
        mean_step = sum(m.step_times_s) / len(m.step_times_s)
        model_rate = m.flops_per_step / mean_step
        step_spread = {"steps": len(m.step_times_s), "min": round(min(m.step_times_s), 4),
                       "max": round(max(m.step_times_s), 4)}
        lines += [
            figure_line(common, precision, "images_per_s", round(images_per_s(m, batch_size), 3), "img/s"),
            figure_line(common, precision, "step_time_s", round(mean_step, 4), "s", **step_spread),
            figure_line(common, precision, "flops_per_step", m.flops_per_step, "FLOP"),
            figure_line(common, precision, "model_flops_per_s", round(model_rate / 1e9, 2), "GFLOP/s"),
            figure_line(common, precision, "gemm_flops_per_s", round(m.gemm_flops_per_s / 1e9, 2), "GFLOP/s",
                        gemm_size=gemm_size),
            figure_line(common, precision, "matmul_efficiency", round(model_rate / m.gemm_flops_per_s, 3), "ratio",
                        baseline=f"gemm_{precision}_{gemm_size}"),
            *usage_lines(common, precision, m, device),
        ]
    return lines


def speedup_line(common: dict, results: dict[str, TrainMeasurement], batch_size: int) -> dict:
    """bf16 ``images_per_s`` / fp32 ``images_per_s``, both from ``results``."""
    speedup = images_per_s(results["bf16"], batch_size) / images_per_s(results["fp32"], batch_size)
    return figure_line(common, "bf16", "bf16_speedup_vs_fp32", round(speedup, 3), "x", baseline="fp32 images_per_s")
