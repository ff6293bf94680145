"""SimMIM's light decoder: a 1x1 conv to each patch's pixels, laid out by pixel shuffle."""

from __future__ import annotations

from torch import Tensor, nn


class PixelShuffleDecoder(nn.Module):
    """Patch features ``(B, embed_dim, h, w)`` -> image ``(B, out_channels, h*patch, w*patch)``.

    A 1x1 conv predicts each patch's ``patch * patch * out_channels`` pixel values; pixel shuffle lays them out.
    """

    def __init__(self, embed_dim: int, patch_size: int, out_channels: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(embed_dim, patch_size * patch_size * out_channels, kernel_size=1)
        self.shuffle = nn.PixelShuffle(patch_size)

    def forward(self, features: Tensor) -> Tensor:
        return self.shuffle(self.proj(features))
