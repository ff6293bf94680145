"""From a ViT's same-stride block outputs to a feature pyramid, and which blocks to tap."""

from collections.abc import Sequence

from torch import Tensor, nn

from sonofm.errors import SonofmError

VIT_STRIDE = 16
# The blocks USFM taps in a 12-block ViT ([3, 5, 7, 11]) as fractions of the depth, coarsest-last.
TAPPED_DEPTH_FRACTIONS = (4 / 12, 6 / 12, 8 / 12, 12 / 12)


def vit_feature_indices(depth: int, count: int) -> list[int]:
    """Strictly increasing block indices for ``count`` (1..4) feature maps of a ``depth``-block ViT.

    Depth 12 gives [3, 5, 7, 11] for 4 maps and [5, 7, 11] for 3: the last ``count`` of USFM's taps. Other depths
    take the same fractions of the depth (rounded half up), pushed apart where rounding merges two; the last is
    always ``depth - 1``.
    """
    if not 1 <= count <= len(TAPPED_DEPTH_FRACTIONS):
        raise ValueError(f"count must be 1..{len(TAPPED_DEPTH_FRACTIONS)}, got {count}")
    if depth < count:
        raise SonofmError(f"a {depth}-block backbone has too few blocks for {count} feature maps")
    indices = [int(fraction * depth + 0.5) - 1 for fraction in TAPPED_DEPTH_FRACTIONS[-count:]]
    for position in range(count - 2, -1, -1):
        indices[position] = min(indices[position], indices[position + 1] - 1)
    return indices


class ViTPyramidNeck(nn.Module):
    """Stride-16 ViT maps ``[(B, C, H/16, W/16)] * L`` -> one map per entry of ``strides``: ``(B, C', H/s, W/s)``.

    The standard ViT-to-pyramid neck: stride 4 by two 2x2 transposed convolutions (BatchNorm + GELU between),
    stride 8 by one, stride 16 unchanged, stride 32 by 2x2 max pooling. ``C' = out_channels`` (default
    ``embed_dim``); where the resampling keeps ``embed_dim`` channels a 1x1 convolution projects to ``C'``.
    """

    def __init__(
        self, embed_dim: int, out_channels: int | None = None, strides: Sequence[int] = (4, 8, 16, 32)
    ) -> None:
        super().__init__()
        self.out_channels = out_channels or embed_dim
        self.strides = tuple(strides)
        self.levels = nn.ModuleList(_resampler(embed_dim, self.out_channels, stride) for stride in self.strides)

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        """One stride-16 map per level -> the pyramid, in the order of ``strides``."""
        if len(maps) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} maps, got {len(maps)}")
        return [level(feature) for level, feature in zip(self.levels, maps, strict=True)]


def _resampler(embed_dim: int, out_channels: int, stride: int) -> nn.Module:
    """The layers that take a stride-16 map with ``embed_dim`` channels to ``stride`` with ``out_channels``."""
    if stride == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(embed_dim, out_channels, kernel_size=2, stride=2),
            nn.BatchNorm2d(out_channels),
            nn.GELU(),
            nn.ConvTranspose2d(out_channels, out_channels, kernel_size=2, stride=2),
        )
    if stride == 8:
        return nn.ConvTranspose2d(embed_dim, out_channels, kernel_size=2, stride=2)
    if stride == VIT_STRIDE:
        return _projection(embed_dim, out_channels)
    if stride == 32:
        return nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2), _projection(embed_dim, out_channels))
    raise ValueError(f"stride must be 4, 8, 16 or 32, got {stride}")


def _projection(embed_dim: int, out_channels: int) -> nn.Module:
    return nn.Identity() if out_channels == embed_dim else nn.Conv2d(embed_dim, out_channels, kernel_size=1)
