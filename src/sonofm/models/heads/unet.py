"""U-Net-style decoder over a ResNet's C2..C5 pyramid."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sonofm.models.heads.upernet import conv_bn_relu, resize


class UpBlock(nn.Module):
    """``x (B, C_in, h, w)`` and ``skip (B, C_skip, 2h, 2w)`` -> ``(B, C_out, 2h, 2w)``: upsample ``x`` bilinearly to
    the skip's size, concatenate, two 3x3 conv + BatchNorm + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels + skip_channels, out_channels), conv_bn_relu(out_channels, out_channels)
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(torch.cat([resize(x, skip.shape[-2:]), skip], dim=1))


class UNetDecoder(nn.Module):
    """Pyramid ``[C2, C3, C4, C5]`` (strides 4, 8, 16, 32) -> logits ``(B, K, H/4, W/4)``.

    C5 is upsampled and merged with C4, then C3, then C2 (one ``UpBlock`` each, ``decoder_channels`` wide), and a
    1x1 classifier follows. The last x4 to the input size is the segmenter's bilinear resize of the logits.
    """

    def __init__(
        self,
        pyramid_channels: Sequence[int],
        num_classes: int,
        decoder_channels: Sequence[int] = (256, 128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        *skip_channels, deepest_channels = pyramid_channels
        in_channels = [deepest_channels, *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            UpBlock(c_in, c_skip, c_out)
            for c_in, c_skip, c_out in zip(in_channels, reversed(skip_channels), decoder_channels, strict=True)
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=1)

    def forward(self, pyramid: Sequence[Tensor]) -> Tensor:
        *skips, x = pyramid
        for block, skip in zip(self.blocks, reversed(skips), strict=True):
            x = block(x, skip)
        return self.classifier(self.dropout(x))
