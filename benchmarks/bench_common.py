"""Helpers shared by the benchmark scripts: memory peaks, device sync, the reference GEMM and the worker subprocess.

The scripts run as ``.venv/bin/python benchmarks/<script>.py`` (or are loaded by path in the smoke tests) and put
their own directory on ``sys.path`` to import this module.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
MIB = 2**20


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on CUDA; nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def run_worker(script: str, args: list[str]) -> dict:
    """Run ``script`` with ``args`` in a fresh interpreter; its last stdout line, parsed as JSON.

    A fresh process per measurement keeps each peak memory (``ru_maxrss``, CUDA peaks) its own.
    """
    command = [sys.executable, script, *args]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])
