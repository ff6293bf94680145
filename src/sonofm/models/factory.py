"""``create_backbone``: build a registered backbone by name and optionally load local weights into it."""

from pathlib import Path

from torch import nn

from sonofm.errors import SonofmError
from sonofm.models import resnet, timm_vit, usfm_vit  # noqa: F401  (importing registers the backbones)
from sonofm.models.registry import get_builder, list_backbones
from sonofm.models.weights import load_backbone_weights


def create_backbone(name: str, img_size: int = 224, weights: str | Path | None = None, **kwargs) -> nn.Module:
    """Build backbone ``name`` for ``img_size`` inputs; ``kwargs`` override its defaults (depth, embed_dim, ...).

    With ``weights`` (a local file) the weights are loaded and ``model.load_report`` tells what happened to every
    key; without, ``model.load_report`` is None and the weights are random.
    """
    builder = get_builder(name)
    if builder is None:
        raise SonofmError(f"unknown backbone '{name}'; available: {', '.join(list_backbones())}")
    try:
        model = builder(img_size=img_size, **kwargs)
    except TypeError as error:
        raise SonofmError(f"backbone '{name}' does not accept these options {sorted(kwargs)}: {error}") from None
    model.backbone_name = name
    model.load_report = load_backbone_weights(model, weights) if weights is not None else None
    return model
