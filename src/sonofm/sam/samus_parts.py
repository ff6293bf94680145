"""The modules SAMUS adds to SAM's image encoder: bottleneck adapters, a CNN branch, cross-branch attention and a
learned reduction of SAM's position embedding. All start from PyTorch's default initialisation, as in SAMUS.

Written from the SAMUS paper's and ACLUS analysis's description (../shared/research/aclus.md section 1.1).
"""

from __future__ import annotations

import math

from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn
from torch.nn import functional as F


class BottleneckAdapter(nn.Module):
    """``Linear(C, C/4) -> GELU -> Linear(C/4, C)``, plus the input when ``residual``: (..., C) -> (..., C)."""

    def __init__(self, dim: int, ratio: float = 0.25, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.down = nn.Linear(dim, int(dim * ratio))
        self.act = nn.GELU()
        self.up = nn.Linear(int(dim * ratio), dim)

    def forward(self, x: Tensor) -> Tensor:
        out = self.up(self.act(self.down(x)))
        return x + out if self.residual else out


class ConvNormAct(nn.Sequential):
    """Optional 2x2 max-pool, 3x3 convolution without bias, channel LayerNorm, GELU: (B, C, H, W) -> (B, C', H', W')."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = False) -> None:
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if downsample else []
        super().__init__(*layers, nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         LayerNorm2d(out_channels), nn.GELU())


class CnnBranch(nn.Module):
    """SAMUS's parallel convolutional branch: (B, 3, S, S) -> (B, S/8, S/8, dim), channels last like SAM's tokens.

    A full-resolution conv to 64 channels, then three max-pool + conv stages: 64 -> 128 -> 256 -> ``dim``.
    """

    def __init__(self, dim: int, stem_channels: int = 64, downsamplings: int = 3) -> None:
        super().__init__()
        widths = [stem_channels * 2**level for level in range(downsamplings)] + [dim]
        self.stem = ConvNormAct(3, stem_channels)
        self.stages = nn.Sequential(*(ConvNormAct(widths[level], widths[level + 1], downsample=True)
                                      for level in range(downsamplings)))

    def forward(self, images: Tensor) -> Tensor:
        return self.stages(self.stem(images)).permute(0, 2, 3, 1)


class PositionReducer(nn.Module):
    """SAM's absolute position embedding to the token grid: one max-pool + conv stage per halving (``log2(64 / g)``
    of them; none when the grids already agree)."""

    def __init__(self, dim: int, source_grid: int, target_grid: int) -> None:
        super().__init__()
        halvings = math.log2(source_grid / target_grid)
        if halvings < 0 or not halvings.is_integer():
            raise ValueError(f"the token grid {target_grid} must be {source_grid} halved a whole number of times")
        self.stages = nn.Sequential(*(ConvNormAct(dim, dim, downsample=True) for _ in range(int(halvings))))

    def forward(self, pos_embed: Tensor) -> Tensor:
        """(1, C, 64, 64) channels first -> (1, g, g, C) channels last, like the tokens."""
        return self.stages(pos_embed).permute(0, 2, 3, 1)


class BranchCrossAttention(nn.Module):
    """Multi-head attention from the ViT tokens (queries) to the CNN branch's features (keys, values).

    tokens, features: (B, H, W, C) -> (B, H, W, C); no position terms.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, features: Tensor) -> Tensor:
        batch, height, width, dim = tokens.shape

        def heads(x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, heads, HW, C / heads)
            return x.reshape(batch, height * width, self.num_heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q(tokens)), heads(self.k(features)), heads(self.v(features)))
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, dim))
