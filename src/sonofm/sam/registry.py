"""SAM model shapes by name and a builder for any square input size, from the ``segment-anything`` package's parts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from sonofm.errors import SonofmError
from sonofm.sam.attention import use_fused_attention
from sonofm.sam.samus import SAM_POSITION_GRID, TOKEN_STRIDE, SamusImageEncoder

NATIVE_IMG_SIZE = 1024  # the input size SAM was trained at
PATCH_SIZE = 16


@dataclass(frozen=True)
class SamSpec:
    """The shape of one SAM variant: image encoder, prompt dimension and mask decoder."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256


SAM_TYPES: dict[str, SamSpec] = {
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
    # SAM-shaped but tiny: for tests, CPU trials and random-init experiments (no official weights exist).
    "vit_tiny": SamSpec(64, 2, 2, (1,), window_size=7, prompt_dim=64, decoder_mlp_dim=256, decoder_heads=4,
                        iou_hidden_dim=64),
}


def sam_spec(sam_type: str) -> SamSpec:
    if sam_type not in SAM_TYPES:
        raise SonofmError(f"unknown sam_type {sam_type!r}; choose one of {', '.join(SAM_TYPES)}")
    return SAM_TYPES[sam_type]


def build_sam(sam_type: str = "vit_b", img_size: int = NATIVE_IMG_SIZE, samus: bool = False) -> Sam:
    """A randomly initialised ``segment_anything`` ``Sam`` of ``sam_type`` taking ``img_size`` square inputs.

    SAM's encoder gives an ``img_size / 16`` image embedding; the decoder's low-resolution masks are 4x that. At 1024
    the module tree and every tensor shape equal the package's own ``sam_model_registry`` model, so official
    checkpoints load as they are; at other sizes :func:`~sonofm.sam.checkpoint.load_sam` resamples the position
    tables. ``samus``: SAMUS's encoder (:mod:`sonofm.sam.samus`) instead, ``img_size / 8`` tokens on a side (64, 128,
    256 or 512 px). The encoder's attention runs fused (:mod:`sonofm.sam.attention`).
    """
    spec = sam_spec(sam_type)
    check_img_size(img_size, samus)
    if samus:
        grid = img_size // TOKEN_STRIDE
        encoder: torch.nn.Module = SamusImageEncoder(img_size, spec.embed_dim, spec.depth, spec.num_heads,
                                                     spec.global_attn_indexes, spec.window_size, spec.prompt_dim)
    else:
        grid = img_size // PATCH_SIZE
        encoder = ImageEncoderViT(
            img_size=img_size, patch_size=PATCH_SIZE, embed_dim=spec.embed_dim, depth=spec.depth,
            num_heads=spec.num_heads, mlp_ratio=4, out_chans=spec.prompt_dim, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            global_attn_indexes=spec.global_attn_indexes, window_size=spec.window_size,
        )
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_dim, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=spec.prompt_dim, mlp_dim=spec.decoder_mlp_dim,
                                          num_heads=spec.decoder_heads),
            transformer_dim=spec.prompt_dim, iou_head_depth=3, iou_head_hidden_dim=spec.iou_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    use_fused_attention(sam.image_encoder)
    return sam


def check_img_size(img_size: int, samus: bool) -> None:
    """Refuse an input size the encoder cannot take, in one line naming the sizes it can."""
    if samus:
        grid = img_size // TOKEN_STRIDE
        if img_size % TOKEN_STRIDE or grid < 8 or SAM_POSITION_GRID % grid or grid & (grid - 1):
            raise SonofmError(f"the SAMUS adapter takes --img-size 64, 128, 256 or 512 (its token grid, img_size / 8, "
                              f"halves SAM's 64x64 position grid), got {img_size}")
    elif img_size < 64 or img_size % PATCH_SIZE:
        raise SonofmError(f"SAM img_size must be a multiple of {PATCH_SIZE} and >= 64, got {img_size}")
