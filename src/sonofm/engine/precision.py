"""Pick the precision and device: bf16 autocast where the hardware runs it fast (AMX / AVX512-BF16 CPUs, bf16 GPUs)."""

from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "bf16", "32")


@cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU advertises AMX-BF16 or AVX512-BF16 (Linux /proc/cpuinfo flags).

    ``SONOFM_CPU_BF16=0`` (or ``1``) overrides the detection, e.g. to reproduce an fp32-only machine."""
    override = os.environ.get("SONOFM_CPU_BF16", "").strip()
    if override in ("0", "1"):
        return override == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """Map ``auto | bf16 | 32`` to a Lightning precision string (``"bf16-mixed"`` or ``"32-true"``)."""
    if precision == "bf16":
        return "bf16-mixed"
    if precision == "32":
        return "32-true"
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def inference_device(accelerator: str = "auto") -> torch.device:
    """The GPU when one is available and allowed by ``accelerator``, else the CPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``precision`` resolves to bf16 there, else a no-op context."""
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    if resolve_precision(precision, accelerator) == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
