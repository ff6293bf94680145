"""Semantic segmenter: a registered backbone, a neck where the head needs one, a decode head and its loss.

Which features each head reads (ViT blocks from ``vit_feature_indices``; ResNet levels from ``forward_pyramid``; a
timm passthrough backbone reads as a ResNet when its levels reach strides 4-32, as a ViT when they share one stride):

- upernet: ViT 4 blocks through ``ViTPyramidNeck`` to strides 4, 8, 16, 32; ResNet C2..C5.
- segvit: ViT 3 blocks through ``ViTPyramidNeck`` to strides 4, 8, 16 (as USFM's SegViT: stride-4 masks);
  ResNet C3..C5 (strides 8, 16, 32).
- linear: ViT last block (stride 16); ResNet C5 (stride 32).
- unet: ResNet C2..C5 only.

Default head sizes follow the backbone (``C = embed_dim``, a ResNet's C5 channels): UPerNet
``channels = min(512, C / 2)`` on a ViT: 384 for ViT-B (the reference used 768, at 3.5x the head's cost), 192 for ViT-S,
96 for ViT-T; ``min(512, 2 * narrowest level)`` on a ResNet: 128 for ResNet-18 (as mmseg's UPerNet-R18), 512 for
ResNet-50; ATM ``dim = min(384, C / 2)``: 384 for ViT-B as in the
reference, 192 for ViT-S, 96 for ViT-T, 256 for ResNet-18, with attention heads 32 wide (12 for ViT-B); the light
head ``channels = min(256, C)``. ``head_args`` override them.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonofm.errors import SonofmError
from sonofm.models.heads.atm import ATMHead, ATMLoss, atm_class_scores
from sonofm.models.heads.linear import ProgressiveUpsamplingHead
from sonofm.models.heads.unet import UNetDecoder
from sonofm.models.heads.upernet import FcnAuxHead, UperNetHead, resize
from sonofm.models.heads.vit_neck import VIT_STRIDE, ViTPyramidNeck, vit_feature_indices
from sonofm.models.layer_ids import LayersAboveBackbone

SEG_HEADS = ("upernet", "segvit", "linear", "unet")
# Per head on a ViT: how many blocks to tap and the strides the neck makes of them (None: no neck).
VIT_FEATURES = {"upernet": (4, (4, 8, 16, 32)), "segvit": (3, (4, 8, 16)), "linear": (1, None)}
# Per head on a ResNet: which pyramid levels (0 = C2, stride 4, ... 3 = C5, stride 32) it reads.
RESNET_LEVELS = {"upernet": (0, 1, 2, 3), "segvit": (1, 2, 3), "linear": (3,), "unet": (0, 1, 2, 3)}
RESNET_STRIDES = (4, 8, 16, 32)
UPERNET_AUX_LEVEL = 2  # the stride-16 level feeds the auxiliary FCN head
ATM_HEAD_WIDTH = 32
ATM_LOSS_ARGS = ("class_weight", "focal_weight", "dice_weight", "no_object_weight")


class Segmenter(LayersAboveBackbone, nn.Module):
    """Images ``(B, 3, H, W)`` -> raw head outputs; ``loss`` against label maps, ``class_scores`` for predictions.

    ``head`` is one of ``SEG_HEADS``. Outputs: ``{"logits": (B, K, H/4, W/4)}`` for the cross-entropy heads
    (upernet adds ``"aux_logits"`` at stride 16 in training mode), or ``ATMHead``'s ``{"mask_logits",
    "class_logits", "aux"}`` for segvit. Parameters are ``backbone.*``, ``neck.*`` (ViT with upernet or segvit), ``head.*`` and
    ``aux_head.*`` (upernet). ``head_args`` go to the head's constructor, except that segvit passes
    ``class_weight``, ``focal_weight``, ``dice_weight`` and ``no_object_weight`` to ``ATMLoss``.

    With a ViT the heads read block outputs, so the backbone's final norm gets no gradient.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        head: str = "upernet",
        ignore_index: int = 255,
        aux_weight: float = 0.4,
        **head_args,
    ) -> None:
        super().__init__()
        if head not in SEG_HEADS:
            raise SonofmError(f"unknown segmentation head '{head}'; valid heads: {', '.join(SEG_HEADS)}")
        self.backbone = backbone
        self.head_name = head
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.reads_pyramid = hasattr(backbone, "forward_pyramid")
        self.taps, in_channels, strides = self._choose_features(head)
        self.neck: ViTPyramidNeck | None = None
        if hasattr(backbone, "freeze_unread"):  # a timm passthrough finds what lies past the levels read itself
            backbone.freeze_unread(self.backbone_features)
        elif not self.reads_pyramid:
            # Heads read block outputs, so the final norm gets no gradient: keep it out of the optimiser (and DDP).
            backbone.norm.requires_grad_(False)
        if not self.reads_pyramid and VIT_FEATURES[head][1] is not None:
            self.neck = ViTPyramidNeck(backbone.embed_dim, strides=strides)
        loss_args = {key: head_args.pop(key) for key in ATM_LOSS_ARGS if key in head_args and head == "segvit"}
        try:
            self.head = _build_head(head, in_channels, strides, num_classes, backbone.embed_dim, head_args,
                                    self.reads_pyramid)
        except TypeError as error:
            raise SonofmError(f"head '{head}' does not accept these options {sorted(head_args)}: {error}") from None
        self.aux_head = FcnAuxHead(in_channels[UPERNET_AUX_LEVEL], num_classes) if head == "upernet" else None
        self.criterion = ATMLoss(ignore_index, **loss_args) if head == "segvit" else None

    def _choose_features(self, head: str) -> tuple[list[int], list[int], list[int]]:
        """(block indices or pyramid levels to read, the head's input channels, their strides), or refuse."""
        unsupported = getattr(self.backbone, "segmentation_unsupported", None)
        if unsupported:
            raise SonofmError(unsupported)
        if self.reads_pyramid:
            levels = list(RESNET_LEVELS[head])
            return levels, [self.backbone.pyramid_channels[i] for i in levels], [RESNET_STRIDES[i] for i in levels]
        name = getattr(self.backbone, "backbone_name", "") or type(self.backbone).__name__
        if not hasattr(self.backbone, "forward_intermediates"):
            raise SonofmError(f"backbone '{name}' offers neither forward_pyramid nor forward_intermediates")
        if head not in VIT_FEATURES:
            raise SonofmError(f"head '{head}' needs a ResNet backbone or a timm model with levels at strides 4-32 (it "
                              f"decodes the C2..C5 pyramid), not '{name}'; "
                              f"valid heads for it: {', '.join(VIT_FEATURES)}")
        count, neck_strides = VIT_FEATURES[head]
        blocks = vit_feature_indices(self.backbone.depth, count)
        return blocks, [self.backbone.embed_dim] * count, list(neck_strides or [VIT_STRIDE])

    def backbone_features(self, images: Tensor) -> list[Tensor]:
        """Images ``(B, 3, H, W)`` -> the backbone maps the head reads (pyramid levels or block outputs), fine to
        coarse."""
        if self.reads_pyramid:
            pyramid = self.backbone.forward_pyramid(images)
            return [pyramid[level] for level in self.taps]
        return self.backbone.forward_intermediates(images, self.taps)

    def features(self, images: Tensor) -> list[Tensor]:
        """Images ``(B, 3, H, W)`` -> the head's input maps (through the neck where there is one), fine to coarse."""
        maps = self.backbone_features(images)
        return maps if self.neck is None else self.neck(maps)

    def forward(self, images: Tensor) -> dict[str, Tensor | list]:
        """Images ``(B, 3, H, W)`` -> raw head outputs (see the class docstring)."""
        features = self.features(images)
        if self.head_name == "segvit":
            return self.head(features)
        outputs = {"logits": self.head(features[0] if self.head_name == "linear" else features)}
        if self.aux_head is not None and self.training:  # the auxiliary head only feeds the training loss
            outputs["aux_logits"] = self.aux_head(features[UPERNET_AUX_LEVEL])
        return outputs

    def loss(self, outputs: dict, masks: Tensor) -> dict[str, Tensor]:
        """Label maps ``(B, H, W)`` int64 at input size -> ``{"loss": total, <terms>}`` in float32, autocast off.

        Cross-entropy heads: ``"ce"`` (and upernet's ``"aux_ce"``, weighted ``aux_weight`` in the total) of the
        logits resized bilinearly to the label size, ``ignore_index`` pixels left out. segvit: ``ATMLoss``'s terms.
        """
        with torch.autocast(masks.device.type, enabled=False):
            if self.criterion is not None:
                return self.criterion(outputs, masks)
            terms = {"ce": self._cross_entropy(outputs["logits"], masks)}
            total = terms["ce"]
            if "aux_logits" in outputs:
                terms["aux_ce"] = self._cross_entropy(outputs["aux_logits"], masks)
                total = total + self.aux_weight * terms["aux_ce"]
            return {"loss": total, **terms}

    def _cross_entropy(self, logits: Tensor, masks: Tensor) -> Tensor:
        return F.cross_entropy(resize(logits.float(), masks.shape[-2:]), masks, ignore_index=self.ignore_index)

    def class_scores(self, outputs: dict, size: Sequence[int]) -> Tensor:
        """Per-class scores ``(B, K, *size)`` whose argmax over K is the prediction.

        Softmax probabilities of the logits resized to ``size`` for the cross-entropy heads; for segvit the mask
        logits are resized, then combined with the class probabilities (``atm_class_scores``).
        """
        if self.head_name == "segvit":
            return atm_class_scores(outputs["class_logits"], resize(outputs["mask_logits"], size))
        return resize(outputs["logits"], size).softmax(dim=1)

    def predict(self, images: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> class scores ``(B, K, H, W)``."""
        return self.class_scores(self(images), images.shape[-2:])


def _build_head(
    head: str, in_channels: list[int], strides: list[int], num_classes: int, width: int, head_args: dict,
    from_pyramid: bool,
) -> nn.Module:
    """The decode head, sized from its inputs and the backbone ``width`` unless ``head_args`` say otherwise."""
    if head == "upernet":
        defaults = {"channels": min(512, 2 * min(in_channels) if from_pyramid else width // 2)}
        return UperNetHead(in_channels, num_classes, **(defaults | head_args))
    if head == "segvit":
        dim = head_args.get("dim", min(384, width // 2))
        defaults = {"dim": dim, "num_heads": math.gcd(dim, max(1, dim // ATM_HEAD_WIDTH))}
        return ATMHead(in_channels, num_classes, **(defaults | head_args))
    if head == "linear":
        defaults = {"channels": min(256, width)}
        return ProgressiveUpsamplingHead(in_channels[0], num_classes, in_stride=strides[0], **(defaults | head_args))
    return UNetDecoder(in_channels, num_classes, **head_args)
