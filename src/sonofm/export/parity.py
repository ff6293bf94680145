"""Check that an exported model reproduces the PyTorch model on the same seeded batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from sonofm.errors import SonofmError

TOLERANCE = 1e-4


def parity_batch(img_size: int, batch_size: int = 2, seed: int = 0) -> Tensor:
    """A seeded normal ``float32 (B, 3, S, S)`` batch (normalised images are roughly standard normal)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 3, img_size, img_size, generator=generator)


def check_parity(reference: nn.Module, exported: Callable[[Tensor], Tensor], img_size: int, name: str,
                 tolerance: float = TOLERANCE) -> float:
    """Max abs difference of ``exported`` vs ``reference`` on :func:`parity_batch`; print it; raise when too large."""
    batch = parity_batch(img_size)
    with torch.inference_mode():
        expected = reference(batch).float()
    actual = exported(batch).float()
    difference = float((expected - actual).abs().max())
    print(f"parity: max abs difference {difference:.3g} (tolerance {tolerance:g})")
    if not difference <= tolerance:
        raise SonofmError(f"{name}: exported model differs from PyTorch by {difference:.3g} (> {tolerance:g})")
    return difference
