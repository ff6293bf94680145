"""Image classifier: any backbone (registered, or a timm passthrough) + mean-pooled patch tokens + LayerNorm + linear
head (USFM's recipe)."""

from __future__ import annotations

import torch
from torch import nn

from sonofm.models.layer_ids import LayersAboveBackbone

HEADS = ("usfm", "linear")


class ImageClassifier(LayersAboveBackbone, nn.Module):
    """``backbone.forward_tokens`` -> mean of patch tokens (prefix tokens excluded) -> ``fc_norm`` -> ``head``.

    ``head``: ``usfm`` (LayerNorm + linear, its weights scaled by ``head_init_scale``: USFM's) or ``linear`` (a
    linear layer on the pooled features with PyTorch's default initialisation: USCL's evaluation head; ``fc_norm``
    is then the identity). Parameter names are ``backbone.*``, ``fc_norm.*`` and ``head.*``, so a saved classifier
    also loads as a backbone (the weight loader strips ``backbone.`` and ignores the head).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, head_init_scale: float = 0.001, drop_rate: float = 0.0,
                 head: str = "usfm"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.backbone = backbone
        # Parameters the tokens do not depend on get no gradient: keep them out of the optimiser (and of distributed
        # training, which stops on parameters without gradients). A timm passthrough backbone finds them itself (a
        # head timm keeps; its tokens include its final norm); pooled patch tokens of the others go through
        # ``fc_norm``, so their final norm is unread.
        if hasattr(backbone, "freeze_unread"):
            backbone.freeze_unread(backbone.forward_tokens)
        elif isinstance(getattr(backbone, "norm", None), nn.Module):
            backbone.norm.requires_grad_(False)
        dim = backbone.embed_dim
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6) if head == "usfm" else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes)
        if head == "linear":
            return
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> pooled, normalised features (B, C)."""
        tokens = self.backbone.forward_tokens(images)
        return self.fc_norm(tokens[:, self.backbone.num_prefix_tokens :].mean(dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> class logits (B, num_classes)."""
        return self.head(self.head_drop(self.forward_features(images)))
