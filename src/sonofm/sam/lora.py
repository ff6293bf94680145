"""Low-rank adapters (LoRA) for the frozen SAM image encoder's attention projections."""

from __future__ import annotations

import math

import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn


class LoRALinear(nn.Module):
    """``base(x) + scale * up(down(x))`` with ``base`` frozen; ``up`` starts at zero, so the output starts unchanged.

    x: (..., in_features) -> (..., out_features).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x)) * self.scale


def add_lora(encoder: ImageEncoderViT, rank: int) -> None:
    """Wrap the fused qkv projection of every encoder block in a :class:`LoRALinear` of ``rank`` (in place)."""
    for block in encoder.blocks:
        if not isinstance(block.attn.qkv, LoRALinear):
            block.attn.qkv = LoRALinear(block.attn.qkv, rank)


def is_lora_parameter(name: str) -> bool:
    """Whether a parameter name (of a model holding LoRA-wrapped encoders) is a LoRA factor."""
    return ".qkv.down." in name or ".qkv.up." in name
