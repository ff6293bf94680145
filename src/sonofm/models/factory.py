"""``create_backbone``: build a registered backbone (or any timm model, ``timm/<name>``) by name and optionally load
local weights into it."""

from functools import partial
from pathlib import Path

from torch import nn

from sonofm.errors import SonofmError, raise_first_failure
from sonofm.models import resnet, timm_vit, usfm_vit  # noqa: F401  (importing registers the backbones)
from sonofm.models.registry import get_builder, get_patch_size, list_backbones
from sonofm.models.state_dict_file import WeightsFile
from sonofm.models.timm_models import is_timm_name, timm_patch_size
from sonofm.models.timm_passthrough import create_timm_backbone
from sonofm.models.weights import load_backbone_weights


def patch_size_of(name: str) -> int:
    """The side in pixels of one token of backbone ``name``; SonofmError listing the backbones for an unknown name
    (close timm names for an unknown ``timm/<name>``)."""
    if is_timm_name(name):
        return timm_patch_size(name)
    patch_size = get_patch_size(name)
    if patch_size is None:
        raise SonofmError(f"unknown backbone '{name}'; available: {', '.join(list_backbones())}, "
                          "or timm/<name> for any timm model")
    return patch_size


def img_size_check(name: str, img_size: int) -> tuple[bool, str]:
    """``(ok, message)``: whether backbone ``name`` tiles ``img_size`` px inputs with whole patches."""
    patch_size = patch_size_of(name)
    return (img_size >= patch_size and img_size % patch_size == 0,
            f"--img-size must be a multiple of {patch_size}, the patch size of {name}, got {img_size}")


def create_backbone(name: str, img_size: int = 224, weights: str | Path | WeightsFile | None = None,
                    **kwargs) -> nn.Module:
    """Build backbone ``name`` for ``img_size`` inputs; ``kwargs`` override its defaults (depth, embed_dim, ...).
    ``timm/<name>`` builds that timm model (``kwargs`` go to ``timm.create_model``) as a passthrough backbone.

    With ``weights`` (a local file, or one already read by ``read_weights_file``) the weights are loaded and
    ``model.load_report`` tells what happened to every key; without, ``model.load_report`` is None and the weights
    are random. An ``img_size`` that is not a multiple of the backbone's patch size is refused.
    """
    raise_first_failure([img_size_check(name, img_size)])
    builder = partial(create_timm_backbone, name) if is_timm_name(name) else get_builder(name)
    try:
        model = builder(img_size=img_size, **kwargs)
    except TypeError as error:
        raise SonofmError(f"backbone '{name}' does not accept these options {sorted(kwargs)}: {error}") from None
    model.backbone_name = name
    model.load_report = load_backbone_weights(model, weights) if weights is not None else None
    return model
