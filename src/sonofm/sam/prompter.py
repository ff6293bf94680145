"""The class-conditional automatic prompter: learned prompt tokens per anatomy class, conditioned on the image.

Each foreground class owns ``tokens_per_class`` learned tokens. A few pre-norm blocks let all classes' tokens attend
to each other (so classes can divide the image between them), then to the image embedding (with SAM's dense
positional encoding on the keys), then pass an MLP. The refined tokens replace click/box embeddings as SAM's sparse
prompt, so one decoder pass gives one mask per class: the anatomy map needs no clicks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PrompterBlock(nn.Module):
    """Token self-attention, cross-attention to image tokens, MLP; each pre-norm with a residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, tokens: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """tokens (B, Q, C); keys, values (B, N, C) image tokens -> (B, Q, C)."""
        normed = self.norm_self(tokens)
        tokens = tokens + self.self_attn(normed, normed, normed, need_weights=False)[0]
        tokens = tokens + self.cross_attn(self.norm_cross(tokens), keys, values, need_weights=False)[0]
        return tokens + self.mlp(self.norm_mlp(tokens))


class ClassPrompter(nn.Module):
    """Image embedding -> per-class sparse prompt tokens.

    num_foreground: anatomy classes without background; dim: SAM's prompt dimension (256 for the official models).
    """

    def __init__(self, num_foreground: int, dim: int, tokens_per_class: int = 2, depth: int = 2) -> None:
        super().__init__()
        self.num_foreground = num_foreground
        self.tokens_per_class = tokens_per_class
        self.class_tokens = nn.Parameter(torch.randn(num_foreground, tokens_per_class, dim) * 0.02)
        self.image_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(PrompterBlock(dim, num_heads=max(1, dim // 32)) for _ in range(depth))
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, image_embeddings: Tensor, image_pe: Tensor) -> Tensor:
        """image_embeddings (B, C, h, w), image_pe (1, C, h, w) -> prompt tokens (B, F, T, C)."""
        batch, dim = image_embeddings.shape[:2]
        values = self.image_norm(image_embeddings.flatten(2).transpose(1, 2))  # (B, hw, C)
        keys = values + image_pe.flatten(2).transpose(1, 2).to(values.dtype)
        tokens = self.class_tokens.reshape(1, -1, dim).expand(batch, -1, -1).to(values.dtype)
        for block in self.blocks:
            tokens = block(tokens, keys, values)
        return self.out_norm(tokens).view(batch, self.num_foreground, self.tokens_per_class, dim)
