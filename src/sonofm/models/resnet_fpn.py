"""ResNet + FPN giving ACLUS's four feature scales in one pass: C5 and P4, P3, P2 (7, 14, 28, 56 at 224 px)."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from sonofm.models.factory import create_backbone

FPN_CHANNELS = 256
SCALES = ("c5", "p4", "p3", "p2")  # coarsest first; strides 32, 16, 8, 4


class ResNetFPN(nn.Module):
    """A registry ResNet (``resnet18`` / ``resnet50``) with a top-down feature pyramid.

    P5 = lateral(C5); P_i = lateral(C_i) + 2x nearest upsampling of P_{i+1}; P4, P3, P2 then pass a 3x3 conv.
    ``forward``: images (B, 3, S, S) -> {"c5": (B, C5, S/32, S/32), "p4": (B, 256, S/16, S/16), "p3": (B, 256, S/8,
    S/8), "p2": (B, 256, S/4, S/4)}.
    """

    def __init__(self, model: str = "resnet18", img_size: int = 224) -> None:
        super().__init__()
        self.backbone = create_backbone(model, img_size=img_size)
        if not hasattr(self.backbone, "forward_pyramid"):
            raise ValueError(f"{model} has no feature pyramid; ACLUS needs a ResNet (resnet18, resnet50)")
        channels = self.backbone.pyramid_channels  # C2..C5
        self.c5_channels = channels[-1]
        self.lateral = nn.ModuleList(nn.Conv2d(c, FPN_CHANNELS, 1) for c in channels)
        self.smooth = nn.ModuleList(nn.Conv2d(FPN_CHANNELS, FPN_CHANNELS, 3, padding=1) for _ in range(3))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        levels = self.forward_unsmoothed(images)
        return {"c5": levels["c5"], **{scale: self.smoothing(scale)(levels[scale]) for scale in SCALES[1:]}}

    def forward_unsmoothed(self, images: Tensor) -> dict[str, Tensor]:
        """The pyramid before the 3x3 convs: C5 and P4, P3, P2 as the top-down path leaves them, shaped as in
        ``forward``; ``smoothing(scale)`` is the conv that turns each P level into ``forward``'s."""
        c2, c3, c4, c5 = self.backbone.forward_pyramid(images)
        p5 = self.lateral[3](c5)
        p4 = self.lateral[2](c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.lateral[1](c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        p2 = self.lateral[0](c2) + F.interpolate(p3, scale_factor=2.0, mode="nearest")
        return {"c5": c5, "p4": p4, "p3": p3, "p2": p2}

    def smoothing(self, scale: str) -> nn.Conv2d:
        """The 3x3 conv of level ``scale`` (p4, p3 or p2)."""
        return self.smooth[SCALES.index(scale) - 1]
