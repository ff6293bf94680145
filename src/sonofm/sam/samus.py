"""SAMUS's image encoder (the A-SAM of ACLUS): SAM's ViT at 8-pixel stride with a parallel CNN branch and adapters.

Changes to SAM's encoder, as SAMUS describes them (../shared/research/aclus.md section 1.1):

* pixels in [0, 1] (no SAM normalisation), resized to ``S + 8`` and cut by SAM's 16x16 patch convolution at stride 8:
  an ``S/8`` token grid (32x32 at 256 px) of overlapping patches;
* an input adapter on the tokens; SAM's 64x64 position embedding reduced to the token grid by a learned
  :class:`~sonofm.sam.samus_parts.PositionReducer`;
* a CNN branch at the same grid; in every global-attention block the normalised tokens first attend to the CNN
  features (added to them), the CNN features pass a 3x3 convolution, and an MLP adapter (no residual) adds half its
  output after the block's MLP;
* the encoder output is ``tokens + 0.5 * CNN features`` through SAM's neck.

Every SAM tensor keeps its name and shape (the global blocks' relative position tables aside, which follow the
grid), so an official checkpoint loads as it is; the SAMUS parts are new and randomly initialised.
"""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Block, PatchEmbed, window_partition, window_unpartition
from torch import Tensor, nn
from torch.nn import functional as F

from sonofm.sam.samus_parts import BottleneckAdapter, BranchCrossAttention, CnnBranch, ConvNormAct, PositionReducer

TOKEN_STRIDE = 8
SAM_POSITION_GRID = 64  # SAM's absolute position embedding covers 1024 px / 16
SAMUS_PARTS = ("cnn_branch", "position_reducer", "input_adapter", "branch_attention", "branch_refine", "mlp_adapter")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def samus_part(name: str) -> str | None:
    """The SAMUS module a parameter name belongs to (absent from SAM checkpoints), or None for SAM's own."""
    return next((piece for piece in name.split(".") if piece in SAMUS_PARTS), None)


class SamusBlock(Block):
    """SAM's block; global-attention blocks (``window_size=0``) also exchange with the CNN branch.

    forward: tokens (B, H, W, C), CNN features (B, H, W, C) -> the same two.
    """

    def __init__(self, dim: int, num_heads: int, **block_args) -> None:
        super().__init__(dim, num_heads, **block_args)
        self.is_global = self.window_size == 0
        if self.is_global:
            self.branch_attention = BranchCrossAttention(dim, num_heads)
            self.branch_refine = ConvNormAct(dim, dim)
            self.mlp_adapter = BottleneckAdapter(dim, residual=False)
            self.adapter_scale = 0.5

    def forward(self, x: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        shortcut = x
        x = self.norm1(x)
        if self.is_global:
            x = x + self.branch_attention(x, features)
            features = self.branch_refine(features.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            x = self.attn(x)
        else:
            height, width = x.shape[1:3]
            windows, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), self.window_size, padded, (height, width))
        x = shortcut + x
        normed = self.norm2(x)
        x = x + self.mlp(normed)
        if self.is_global:
            x = x + self.adapter_scale * self.mlp_adapter(normed)
        return x, features


class SamusImageEncoder(nn.Module):
    """(B, 3, S, S) ImageNet-normalised images -> image embeddings (B, out_chans, S/8, S/8).

    ``S / 8`` must be 64 halved a whole number of times (S = 64, 128, 256 or 512).
    """

    def __init__(self, img_size: int, embed_dim: int, depth: int, num_heads: int,
                 global_attn_indexes: tuple[int, ...], window_size: int, out_chans: int) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // TOKEN_STRIDE
        self.patch_embed = PatchEmbed(kernel_size=(16, 16), stride=(TOKEN_STRIDE, TOKEN_STRIDE), in_chans=3,
                                      embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, SAM_POSITION_GRID, SAM_POSITION_GRID, embed_dim))
        self.position_reducer = PositionReducer(embed_dim, SAM_POSITION_GRID, grid)
        self.input_adapter = BottleneckAdapter(embed_dim)
        self.cnn_branch = CnnBranch(embed_dim)
        self.blocks = nn.ModuleList(
            SamusBlock(embed_dim, num_heads, mlp_ratio=4, qkv_bias=True,
                       norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                       window_size=0 if index in global_attn_indexes else window_size, input_size=(grid, grid))
            for index in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False), LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False), LayerNorm2d(out_chans),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        pixels = images * self.std.to(images.dtype) + self.mean.to(images.dtype)  # SAMUS reads [0, 1] pixels
        features = self.cnn_branch(pixels)
        size = self.img_size + TOKEN_STRIDE
        x = self.patch_embed(F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False))
        positions = self.pos_embed if torch.is_grad_enabled() else self.pos_embed.detach()  # (1, 64, 64, C)
        # detached without gradients: torch's module hooks (FLOP counting) cannot track a leaf in inference mode
        x = self.input_adapter(x) + self.position_reducer(positions.permute(0, 3, 1, 2)).to(x.dtype)
        for block in self.blocks:
            x, features = block(x, features)
        return self.neck((x + 0.5 * features).permute(0, 3, 1, 2))

    def trainable_names(self) -> set[str]:
        """SAMUS's freezing rule: its own parts and the global blocks' relative position tables train."""
        names = {name for name, _ in self.named_parameters() if samus_part(name)}
        for index, block in enumerate(self.blocks):
            if block.is_global:
                names |= {f"blocks.{index}.attn.rel_pos_h", f"blocks.{index}.attn.rel_pos_w"}
        return names
