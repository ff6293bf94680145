"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies, from a backbone feature map.

The feature map is the backbone's last one: a ResNet's ``layer4`` output, a ViT's last-block patch tokens laid
out on the patch grid (prefix tokens dropped), or a timm passthrough's last feature level (``feature_map_layer``).
Per image and target class: channel weights are the spatial mean of the class logit's gradient with respect to the
map; the CAM is the ReLU of the weighted channel sum, upsampled bilinearly to the image size and scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sonofm.errors import SonofmError
from sonofm.models.resnet import ResNetBackbone
from sonofm.models.vit_helpers import ViTBackboneMixin, tokens_to_map

ToMap = Callable[[Tensor], Tensor]


def feature_layer(backbone: nn.Module) -> tuple[nn.Module, ToMap]:
    """The module whose output is the last feature map, and how that output becomes ``(B, C, h, w)``."""
    if hasattr(backbone, "feature_map_layer"):
        return backbone.feature_map_layer()
    if isinstance(backbone, ResNetBackbone):
        return backbone.layer4, lambda output: output
    if isinstance(backbone, ViTBackboneMixin):
        prefix, grid = backbone.num_prefix_tokens, backbone.grid_size
        return backbone.blocks[-1], lambda tokens: tokens_to_map(tokens[:, prefix:], grid)
    raise SonofmError(f"Grad-CAM supports ResNet, ViT and timm backbones, not {type(backbone).__name__}")


def grad_cam(model: nn.Module, images: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Grad-CAM maps of ``model`` (an ``nn.Module`` with a ``backbone``, mapping images to logits) for ``images``.

    Args:
        model: the classifier, used as it is (put it in eval mode first); its parameters need no gradients.
        images: ``(B, 3, H, W)`` model inputs.
        targets: ``(B,)`` class per image; default the predicted class.

    Returns:
        ``(cams (B, H, W) in [0, 1], logits (B, K))``; a map with no positive evidence is all zeros.
    """
    layer, to_map = feature_layer(model.backbone)
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        with torch.enable_grad():
            logits = model(images.detach().requires_grad_(True)).float()
            targets = logits.argmax(dim=1) if targets is None else targets.to(logits.device)
            score = logits.gather(1, targets.long()[:, None]).sum()  # each image's logit depends on it alone
            (gradient,) = torch.autograd.grad(score, captured[-1])
    finally:
        handle.remove()
    activations, gradients = to_map(captured[-1].detach()).float(), to_map(gradient).float()
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cams = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cams = F.interpolate(cams, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cams.amin(dim=(1, 2), keepdim=True)
    high = cams.amax(dim=(1, 2), keepdim=True)
    return (cams - low) / (high - low).clamp_min(1e-12), logits.detach()
