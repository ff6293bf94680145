"""``timm/<name>`` model names: checking them, and building the timm model with random weights (nothing is fetched)."""

from __future__ import annotations

import difflib
from functools import cache

import timm
from timm.models import get_pretrained_cfg
from torch import nn

from sonofm.errors import SonofmError, first_line

TIMM_PREFIX = "timm/"
CLOSE_MATCHES = 5
# Options sonofm sets itself, or that would fetch or load weights behind the loader's back.
NOT_PASSED = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir", "num_classes",
              "features_only", "img_size")


def is_timm_name(name: str) -> bool:
    """Whether ``name`` asks for a timm model (``timm/<name>``) rather than a registered backbone."""
    return name.startswith(TIMM_PREFIX)


def timm_model_name(name: str) -> str:
    """``timm/convnext_tiny.fb_in22k`` -> ``convnext_tiny.fb_in22k`` (architecture, optional pretrained tag); a name
    timm does not know is a SonofmError with its closest timm names."""
    timm_name = name.removeprefix(TIMM_PREFIX)
    if timm.is_model(timm_name):
        return timm_name
    close = difflib.get_close_matches(timm_name.partition(".")[0], timm.list_models(), n=CLOSE_MATCHES)
    hint = f"close matches: {', '.join(TIMM_PREFIX + match for match in close)}; " if close else ""
    raise SonofmError(f"unknown timm model '{timm_name}'; {hint}list names with "
                      f"python -c \"import timm; print(timm.list_models('*{timm_name[:4]}*'))\"")


def takes_img_size(timm_name: str) -> bool:
    """Whether the model is built for one input size (ViTs, Swin: timm's ``fixed_input_size``), so it needs
    ``img_size``; other models (CNNs) take any size."""
    try:
        config = get_pretrained_cfg(timm_name)
    except RuntimeError as error:  # an unknown pretrained tag
        raise SonofmError(f"timm model '{timm_name}': {first_line(error)}") from None
    return bool(config is not None and config.fixed_input_size)


def build_timm_model(name: str, img_size: int, device: str | None = None, **kwargs) -> nn.Module:
    """timm's model ``timm/<name>`` for ``img_size`` px inputs, without its classifier, randomly initialised.

    ``kwargs`` go to ``timm.create_model`` (``drop_path_rate``, ``output_stride``, ...); ``drop_path_rate=0`` is left
    out, so models without stochastic depth build too. A TypeError (an option the model does not take) propagates.
    ``device="meta"`` builds the structure without weights (to read its geometry).
    """
    timm_name = timm_model_name(name)
    refused = sorted(set(kwargs) & set(NOT_PASSED))
    if refused:
        raise SonofmError(f"model_args {refused} are not passed to timm: sonofm builds {name} without its classifier, "
                          "for --img-size, and loads weights only from --weights FILE")
    if kwargs.get("drop_path_rate") == 0:
        del kwargs["drop_path_rate"]
    if takes_img_size(timm_name):
        kwargs["img_size"] = img_size
    if device is not None:
        kwargs["device"] = device
    try:
        return timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
    except (RuntimeError, ValueError, AssertionError) as error:
        raise SonofmError(f"timm could not build {name} for {img_size} px: {first_line(error)}") from None


@cache
def timm_patch_size(name: str) -> int:
    """The output stride of ``timm/<name>`` (a ViT's patch, a CNN's last reduction: what input sizes must be multiples
    of), read from a weightless build on the meta device."""
    model = build_timm_model(name, img_size=224, device="meta")
    return feature_reductions(model, name)[-1]


def feature_reductions(model: nn.Module, name: str) -> list[int]:
    """The stride of each of the model's feature levels (timm's ``feature_info``), input side first."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise SonofmError(f"timm model {name} describes no feature levels (feature_info); it cannot be a backbone")
    return [int(level["reduction"]) for level in info]
