"""The USFM encoder: a BEiT-style ViT/16 with relative position bias, layer scale and a mask token.

Built on ``timm.models.beit.Beit`` so parameter names match the official checkpoint. By default every block has its
own relative position table (the official shared table is copied into each on loading, see ``usfm_checkpoint``);
with ``shared_rel_pos_bias=True`` all blocks share one table, ``rel_pos_bias.relative_position_bias_table``, as in
USFM pretraining. timm's attention adds the bias as a float mask to ``scaled_dot_product_attention``; its index
follows BEiT: ``(dy + h - 1) * (2w - 1) + (dx + w - 1)`` for patch pairs, and the last 3 table rows for
cls->token, token->cls and cls->cls.
"""

from functools import partial

import torch
from timm.layers import LayerNorm, trunc_normal_
from timm.models.beit import Beit
from torch import Tensor, nn

from sonofm.models.vit_helpers import ViTBackboneMixin, check_image_batch, register_vit_sizes

PATCH_SIZE = 16


class UsfmViT(ViTBackboneMixin, Beit):
    """USFM ViT encoder. Images ``(B, 3, H, W)`` -> tokens ``(B, 1 + N, C)``, CLS first, ``N = (H/16)(W/16)``.

    ``shared_rel_pos_bias``: one relative position table for all blocks (``rel_pos_bias``) instead of one per block.
    """

    backbone_name: str = ""  # the registry name; set by create_backbone

    def __init__(
        self,
        img_size: int = 224,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        layer_scale_init: float = 0.1,
        shared_rel_pos_bias: bool = False,
    ) -> None:
        super().__init__(
            img_size=img_size,
            patch_size=PATCH_SIZE,
            num_classes=0,
            global_pool="",
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            qkv_bias=True,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            norm_layer=partial(LayerNorm, eps=1e-6),
            init_values=layer_scale_init,
            use_abs_pos_emb=False,
            use_rel_pos_bias=not shared_rel_pos_bias,
            use_shared_rel_pos_bias=shared_rel_pos_bias,
        )
        self.shared_rel_pos_bias = shared_rel_pos_bias
        self._record_geometry(img_size, depth)
        # Frozen unless masked image modelling fills hidden patches with it (``MaskedImageModel``): a parameter that
        # gets no gradient would stop distributed training.
        self.mask_token = nn.Parameter(torch.empty(1, 1, embed_dim), requires_grad=False)
        trunc_normal_(self.mask_token, std=0.02)

    def forward_tokens(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` -> last block's tokens ``(B, 1 + N, C)`` before the final norm.

        ``mask`` ``(B, N)`` bool: where True the patch embedding is replaced by ``mask_token``.
        """
        return self._run_blocks(self._embed(x, mask))

    def _select_attention_kernel(self, device: torch.device) -> None:
        """Fused SDPA on accelerators; timm's explicit matmul attention on CPU.

        On CPU, ``scaled_dot_product_attention`` with a trainable float bias falls back to a reference kernel that
        upcasts bf16 to fp32; the explicit path keeps its matmuls in bf16 under autocast (about 15 % faster per
        training step for ViT-B here; see benchmarks/README.md). Both compute the same function.
        """
        fused = device.type != "cpu"
        for block in self.blocks:
            block.attn.fused_attn = fused

    def forward_features(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Final-normed tokens ``(B, 1 + N, C)``; ``mask`` as in ``forward_tokens``."""
        return self.norm(self.forward_tokens(x, mask))

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay: tokens and relative position tables."""
        return super().no_weight_decay() | {"mask_token"}

    def _block_kwargs(self) -> dict[str, Tensor]:
        """The shared bias ``(heads, 1 + N, 1 + N)`` for every block when the model has one table for all."""
        if self.rel_pos_bias is None:
            return {}
        return {"shared_rel_pos_bias": self.rel_pos_bias()}

    def _embed(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Images -> ``(B, 1 + N, C)``: patch embeddings (masked ones replaced) behind the CLS token."""
        check_image_batch(x, self.patch_embed.img_size)
        self._select_attention_kernel(x.device)
        patches = self.patch_embed(x)
        if mask is not None:
            if mask.dtype != torch.bool or mask.shape != patches.shape[:2]:
                raise ValueError(f"mask must be bool {tuple(patches.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
            patches = torch.where(mask.unsqueeze(-1), self.mask_token.to(patches.dtype), patches)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return self.pos_drop(torch.cat((cls, patches), dim=1))


register_vit_sizes("usfm_vit", UsfmViT, PATCH_SIZE)
