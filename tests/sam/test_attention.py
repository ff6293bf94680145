"""The fused encoder attention equals the package's, with and without gradients."""

import torch
from segment_anything.modeling.image_encoder import Attention

from sonofm.sam import build_sam
from sonofm.sam.attention import FusedRelPosAttention


def test_fused_attention_matches_the_package_attention():
    torch.manual_seed(0)
    sam = build_sam("vit_tiny", 128)
    blocks = sam.image_encoder.blocks
    assert all(type(block.attn) is FusedRelPosAttention for block in blocks)
    for block in blocks:  # SAM zero-initialises the tables: give them values
        block.attn.rel_pos_h.data.normal_(0, 0.5)
        block.attn.rel_pos_w.data.normal_(0, 0.5)
    x = torch.randn(2, 8, 8, 64)
    for block in blocks:  # a windowed block (7 x 7 windows) and a global one
        attn = block.attn
        with torch.no_grad():
            fused = attn(x)
            reference = Attention.forward(attn, x)
        torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
        with torch.enable_grad():  # CPU with gradients: the package's path, so gradients reach the tables
            attn(x).sum().backward()
        assert attn.rel_pos_h.grad is not None and attn.rel_pos_h.grad.abs().sum() > 0
