"""Plain timm ViT/16 backbones (learned absolute position embedding, CLS token), randomly initialised."""

from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from sonofm.models.vit_helpers import ViTBackboneMixin, check_image_batch, register_vit_sizes

PATCH_SIZE = 16


class TimmViT(ViTBackboneMixin, VisionTransformer):
    """timm ``VisionTransformer`` with the sonofm backbone interface; parameter names are timm's.

    Images ``(B, 3, H, W)`` -> tokens ``(B, 1 + N, C)``, CLS first, ``N = (H/16)(W/16)``.
    """

    backbone_name: str = ""  # the registry name; set by create_backbone

    def __init__(
        self,
        img_size: int = 224,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(
            img_size=img_size,
            patch_size=PATCH_SIZE,
            num_classes=0,
            global_pool="token",
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
        )
        self._record_geometry(img_size, depth)

    def _embed(self, x: Tensor) -> Tensor:
        """Images -> ``(B, 1 + N, C)``: CLS token and patch embeddings plus the position embedding."""
        check_image_batch(x, self.patch_embed.img_size)
        return self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))


register_vit_sizes("timm_vit", TimmViT, PATCH_SIZE)
