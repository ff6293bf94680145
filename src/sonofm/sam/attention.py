"""SAM's image-encoder attention with PyTorch's fused ``scaled_dot_product_attention``.

The package's ``Attention`` materialises the attention matrix, adds the decomposed relative position terms and
applies a softmax, each a full pass over ``(B, heads, HW, HW)``. Here the relative position terms become the float
mask of one fused call. Without gradients (inference, frozen encoders, cached embeddings) and on CUDA this is what
runs; a CPU pass that needs the mask's gradient keeps the package's path, because CPU SDPA computes that gradient
with a slow fp32 reference kernel. Same parameters, same state dict, outputs equal to within float rounding.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import Tensor, nn
from torch.nn import functional as F


class FusedRelPosAttention(Attention):
    """Drop-in for ``segment_anything``'s ``Attention``: x (B, H, W, C) -> (B, H, W, C)."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.device.type == "cpu":
            return super().forward(x)
        batch, height, width, _ = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self._relative_bias(q, height, width) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale head_dim ** -0.5, as SAM's
        return self.proj(out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1))

    def _relative_bias(self, q: Tensor, height: int, width: int) -> Tensor:
        """SAM's decomposed relative position terms as an additive mask (B, heads, HW, HW) in q's dtype."""
        batch, heads, _, head_dim = q.shape
        table_h = get_rel_pos(height, height, self.rel_pos_h).to(q.dtype)  # (H, H, head_dim)
        table_w = get_rel_pos(width, width, self.rel_pos_w).to(q.dtype)
        grid_q = q.reshape(batch, heads, height, width, head_dim)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, table_h)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, table_w)
        return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(batch, heads, height * width, height * width)


def use_fused_attention(module: nn.Module) -> None:
    """Switch every SAM ``Attention`` inside ``module`` to :class:`FusedRelPosAttention` (in place)."""
    for child in module.modules():
        if type(child) is Attention:
            child.__class__ = FusedRelPosAttention
