"""torchvision ResNet backbones (randomly initialised) with the sonofm token interface and a C2..C5 pyramid."""

import torch
from timm.layers import DropPath, calculate_drop_path_rates
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from sonofm.models.registry import register_backbone

C5_STRIDE = 32  # one token per 32x32 pixels; the feature pyramid's levels add up only at multiples of it

STEM_PARAMS = frozenset({"conv1", "bn1"})


class _ResidualWithDropPath:
    """torchvision's block computation with stochastic depth on the residual branch (``drop_path``)."""

    drop_path: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(self.residual(x)) + shortcut)


class _BasicBlock(_ResidualWithDropPath, BasicBlock):
    def residual(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class _Bottleneck(_ResidualWithDropPath, Bottleneck):
    def residual(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))


class ResNetBackbone(ResNet):
    """torchvision ResNet without pooling and classifier; parameter names are torchvision's.

    ``forward_tokens``: images ``(B, 3, H, W)`` -> ``(B, 1 + h*w, C)``: the C5 map ``(B, C, H/32, W/32)`` flattened
    row-major, behind its spatial mean as the one prefix token. ``drop_path_rate`` (stochastic depth on the residual
    branches) rises linearly from 0 over the blocks, as in the ViTs.
    """

    backbone_name: str = ""  # the registry name; set by create_backbone
    num_prefix_tokens = 1
    num_layer_ids = 5
    last_stage_layer_id = 4  # layer4: what partial fine-tuning trains

    def __init__(
        self,
        block: type[_BasicBlock | _Bottleneck],
        layers: list[int],
        img_size: int = 224,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(block, layers)
        del self.avgpool, self.fc
        self.img_size = img_size
        self.pyramid_channels = [64 * block.expansion * 2**stage for stage in range(4)]
        self.embed_dim = self.pyramid_channels[-1]
        blocks = [unit for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for unit in stage]
        for unit, rate in zip(blocks, calculate_drop_path_rates(drop_path_rate, len(blocks)), strict=True):
            unit.drop_path = DropPath(rate) if rate > 0 else nn.Identity()

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        """Images ``(B, 3, H, W)`` -> [C2, C3, C4, C5] at strides 4, 8, 16, 32 with ``pyramid_channels``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        pyramid = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            pyramid.append(x)
        return pyramid

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> ``(B, 1 + h*w, C)``: spatial mean of C5, then C5's positions."""
        patches = self.forward_pyramid(x)[-1].flatten(2).transpose(1, 2)
        return torch.cat((patches.mean(dim=1, keepdim=True), patches), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Same as ``forward_tokens``."""
        return self.forward_tokens(x)

    def layer_id(self, param_name: str) -> int:
        """Layer-decay group: 0 for the stem (conv1, bn1), k for ``layer{k}``."""
        root = param_name.partition(".")[0]
        if root in STEM_PARAMS:
            return 0
        if root.startswith("layer"):
            return int(root.removeprefix("layer"))
        raise ValueError(f"not a ResNet backbone parameter: {param_name}")


@register_backbone("resnet18", patch_size=C5_STRIDE)
def resnet18(img_size: int = 224, **overrides) -> ResNetBackbone:
    """ResNet-18: C5 has 512 channels."""
    return ResNetBackbone(_BasicBlock, [2, 2, 2, 2], img_size=img_size, **overrides)


@register_backbone("resnet50", patch_size=C5_STRIDE)
def resnet50(img_size: int = 224, **overrides) -> ResNetBackbone:
    """ResNet-50: C5 has 2048 channels."""
    return ResNetBackbone(_Bottleneck, [3, 4, 6, 3], img_size=img_size, **overrides)
