"""UPerNet decode head (pyramid pooling + FPN) and the FCN auxiliary head, with BatchNorm."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Convolution (same padding, no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``(B, C, *size)`` (align_corners False)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """``(B, C, h, w)`` -> ``(B, channels, h, w)``: the map and its average pools at ``pool_scales`` (each 1x1 conv,
    upsampled back), concatenated and fused by a 3x3 conv."""

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int]) -> None:
        super().__init__()
        self.pools = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), conv_bn_relu(in_channels, channels, kernel_size=1))
            for scale in pool_scales
        )
        self.fuse = conv_bn_relu(in_channels + len(pool_scales) * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        pooled = [resize(pool(x), x.shape[-2:]) for pool in self.pools]
        return self.fuse(torch.cat([x, *pooled], dim=1))


class UperNetHead(nn.Module):
    """Pyramid ``[(B, C_i, H/s_i, W/s_i)]`` fine to coarse (strides 4, 8, 16, 32) -> logits ``(B, K, H/4, W/4)``.

    Pyramid pooling on the coarsest level, FPN lateral 1x1 convs and a top-down pathway, a 3x3 conv per level,
    then every level upsampled to the finest, concatenated and fused by a 3x3 conv, dropout and a 1x1 classifier.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        *finer_channels, coarsest_channels = in_channels
        self.pyramid_pooling = PyramidPooling(coarsest_channels, channels, pool_scales)
        self.laterals = nn.ModuleList(conv_bn_relu(c, channels, kernel_size=1) for c in finer_channels)
        self.smooth = nn.ModuleList(conv_bn_relu(channels, channels) for _ in finer_channels)
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        *finer, coarsest = features
        top_down = [lateral(x) for lateral, x in zip(self.laterals, finer, strict=True)]
        top_down.append(self.pyramid_pooling(coarsest))
        for level in range(len(top_down) - 1, 0, -1):
            top_down[level - 1] = top_down[level - 1] + resize(top_down[level], top_down[level - 1].shape[-2:])
        outputs = [smooth(x) for smooth, x in zip(self.smooth, top_down[:-1], strict=True)] + [top_down[-1]]
        size = outputs[0].shape[-2:]
        fused = self.fuse(torch.cat([outputs[0], *(resize(x, size) for x in outputs[1:])], dim=1))
        return self.classifier(self.dropout(fused))


class FcnAuxHead(nn.Module):
    """Auxiliary head: ``(B, C, h, w)`` -> logits ``(B, K, h, w)`` by one 3x3 conv, dropout and a 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.conv(x)))
