"""Plain timm ViT/16 backbones (learned absolute position embedding, CLS token), randomly initialised."""

from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from sonofm.models.registry import register_backbone
from sonofm.models.vit_helpers import ViTBackboneMixin, check_image_batch, check_patch_multiple

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
        check_patch_multiple(img_size, PATCH_SIZE)
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
        self.img_size = img_size
        self.patch_size = PATCH_SIZE
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)
        self.depth = depth
        self.num_layer_ids = depth + 2

    def _embed(self, x: Tensor) -> Tensor:
        """Images -> ``(B, 1 + N, C)``: CLS token and patch embeddings plus the position embedding."""
        check_image_batch(x, self.patch_embed.img_size)
        return self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))


def _build(img_size: int, overrides: dict, **defaults) -> TimmViT:
    """A TimmViT with ``defaults`` (a variant's shape) updated by the caller's ``overrides``."""
    return TimmViT(img_size=img_size, **(defaults | overrides))


@register_backbone("timm_vit_tiny_patch16")
def timm_vit_tiny_patch16(img_size: int = 224, **overrides) -> TimmViT:
    """timm ViT-Tiny/16: 192 dim, 12 blocks, 3 heads."""
    return _build(img_size, overrides, embed_dim=192, depth=12, num_heads=3)


@register_backbone("timm_vit_small_patch16")
def timm_vit_small_patch16(img_size: int = 224, **overrides) -> TimmViT:
    """timm ViT-Small/16: 384 dim, 12 blocks, 6 heads."""
    return _build(img_size, overrides, embed_dim=384, depth=12, num_heads=6)


@register_backbone("timm_vit_base_patch16")
def timm_vit_base_patch16(img_size: int = 224, **overrides) -> TimmViT:
    """timm ViT-Base/16: 768 dim, 12 blocks, 12 heads."""
    return _build(img_size, overrides, embed_dim=768, depth=12, num_heads=12)
