"""The light head ("linear" in ``SEG_HEADS``): progressive upsampling of one map, SETR-PUP-lite."""

import torch.nn.functional as F
from torch import Tensor, nn

from sonofm.models.heads.upernet import conv_bn_relu

OUTPUT_STRIDE = 4


class ProgressiveUpsamplingHead(nn.Module):
    """One map ``(B, C, H/s, W/s)`` -> logits ``(B, K, H/4, W/4)``.

    BatchNorm on the input (a ViT block's output is not normalised), then per factor of 2 between ``in_stride`` and
    4 a 3x3 conv + BatchNorm + ReLU followed by 2x bilinear upsampling, then dropout and a 1x1 classifier: two steps
    for a ViT's last block (stride 16), three for a ResNet's C5 (stride 32).
    """

    def __init__(
        self, in_channels: int, num_classes: int, in_stride: int, channels: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        steps = (in_stride // OUTPUT_STRIDE).bit_length() - 1
        if steps < 1 or in_stride != OUTPUT_STRIDE * 2**steps:
            raise ValueError(f"in_stride must be {OUTPUT_STRIDE} times a power of 2 (8, 16, 32, ...), got {in_stride}")
        self.input_norm = nn.BatchNorm2d(in_channels)
        self.steps = nn.ModuleList(conv_bn_relu(in_channels if i == 0 else channels, channels) for i in range(steps))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_norm(x)
        for step in self.steps:
            x = F.interpolate(step(x), scale_factor=2, mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(x))
