"""Image enhancer: a registered ViT backbone + pixel-shuffle decoder + a small refinement on the input skip."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sonofm.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sonofm.errors import SonofmError
from sonofm.models.heads.pixel_shuffle import PixelShuffleDecoder
from sonofm.models.layer_ids import LayersAboveBackbone


class ImageEnhancer(LayersAboveBackbone, nn.Module):
    """Degraded images ``(B, 3, H, W)`` in [0, 1] -> restored images ``(B, 3, H, W)`` (about [0, 1], not clamped).

    The input is ImageNet-normalised inside the model (plain tensor in, tensor out, no randomness: ONNX-exportable).
    The backbone's last block ``(B, C, H/16, W/16)`` goes through a ``PixelShuffleDecoder`` to a full-size residual;
    a 3x3 conv stack (``refine_channels`` wide) sees the input and that residual and predicts the final residual,
    added to the input (the skip keeps what needs no change); the last conv starts at zero, so an untrained
    enhancer returns its input. Parameters: ``backbone.*``, ``decoder.*``, ``refine.*``.
    """

    def __init__(self, backbone: nn.Module, refine_channels: int = 32) -> None:
        super().__init__()
        if not all(hasattr(backbone, name) for name in ("forward_intermediates", "embed_dim", "depth", "norm")):
            name = getattr(backbone, "backbone_name", "") or type(backbone).__name__
            raise SonofmError(f"enhancement needs a ViT backbone with forward_intermediates, not '{name}'")
        self.backbone = backbone
        backbone.norm.requires_grad_(False)  # the decoder reads the last block, not the final norm
        self.last_block = backbone.depth - 1
        self.patch_size = int(getattr(backbone, "patch_size", 16))
        self.decoder = PixelShuffleDecoder(backbone.embed_dim, self.patch_size, out_channels=3)
        self.refine = nn.Sequential(
            nn.Conv2d(6, refine_channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(refine_channels, refine_channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(refine_channels, 3, 3, padding=1),
        )
        nn.init.zeros_(self.refine[-1].weight)  # start as the identity: restored == input
        nn.init.zeros_(self.refine[-1].bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        features = self.backbone.forward_intermediates((images - self.mean) / self.std, [self.last_block])[0]
        coarse = self.decoder(features)
        return images + self.refine(torch.cat([images, coarse], dim=1))
