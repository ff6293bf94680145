"""Any timm model as a sonofm backbone (``--model timm/<name>``): timm builds it, and the backbone interface is mixed
into it, so parameter names, ``forward_features``, feature levels and layer groups stay timm's."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import cache

import torch
from timm.models import group_parameters
from timm.optim import auto_group_layers
from torch import Tensor, nn

from sonofm.errors import SonofmError
from sonofm.models.timm_models import build_timm_model, feature_reductions
from sonofm.models.unread_parameters import Features, freeze_unread_parameters
from sonofm.models.vit_helpers import tokens_to_map

PYRAMID_STRIDES = (4, 8, 16, 32)  # the levels a pyramid head (UPerNet, U-Net, ...) reads: C2..C5 of a ResNet
FILTER_NAMES = ("checkpoint_filter_fn", "_filter_fn")  # what timm calls an architecture's checkpoint converter
CLASSIFIER_REASON = "timm classifier head, not part of the backbone"


class TimmBackbone:
    """The backbone interface on a timm model; ``create_timm_backbone`` swaps the model's class for a subclass with
    this mixin first and sets the attributes below.

    ``forward_tokens`` (and calling the module): images ``(B, 3, H, W)`` -> tokens ``(B, P + N, C)`` from timm's
    ``forward_features``: a ViT's (timm's ``num_prefix_tokens`` prefix tokens, then the patches; after its final norm)
    as timm gives them (``timm_tokens``); other models' feature map ``(B, C, h, w)`` (or NHWC, or tokens without a
    prefix) as their spatial mean (``P = 1``) then their ``h*w`` positions, row-major.
    ``C = embed_dim`` is timm's ``num_features``. Layer ids are the groups of timm's fine ``group_matcher`` (what
    timm's own layer decay uses), from 0 (stem) up; modules built on top sit one id above. The last stage is the module
    of the last ``feature_info`` level (what partial fine-tuning trains, with everything above it), its last block
    the top group inside it.
    """

    backbone_name: str
    img_size: int
    embed_dim: int
    num_prefix_tokens: int
    grid_size: tuple[int, int]
    num_layer_ids: int
    last_stage_layer_id: int
    last_block_prefix: str | None
    segmentation_unsupported: str | None = None  # why no segmentation head can read this model
    channels_last: bool
    timm_tokens: bool
    sonofm_layer_ids: dict[str, int]
    feature_info: list[dict]
    pretrained_cfg: dict

    def forward(self, x: Tensor) -> Tensor:
        """Same as ``forward_tokens``."""
        return self.forward_tokens(x)

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> ``(B, P + N, C)`` (see the class docstring)."""
        features = self.forward_features(x)
        if features.ndim == 3 and self.timm_tokens:
            return features
        if features.ndim == 4:
            features = (features if self.channels_last else features.permute(0, 2, 3, 1)).flatten(1, 2)
        return torch.cat((features.mean(dim=1, keepdim=True), features), dim=1)

    def layer_id(self, param_name: str) -> int:
        """Layer-decay group of a parameter: its timm group, 0 (stem) to ``num_layer_ids - 1``."""
        return self.sonofm_layer_ids[param_name]

    def freeze_unread(self, forward: Callable[[Tensor], Features]) -> list[str]:
        """Stop gradients to the parameters ``forward`` never reads (a classifier head timm keeps, what lies past the
        levels a segmentation head taps); returns their names."""
        return freeze_unread_parameters(self, forward, self.img_size)

    def feature_map_layer(self) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
        """The module of the last feature level and how its output becomes a ``(B, C, h, w)`` map (for Grad-CAM)."""
        module = self.get_submodule(self.feature_info[-1]["module"])

        def to_map(output: Tensor) -> Tensor:
            if output.ndim == 3:
                return tokens_to_map(output[:, self.num_prefix_tokens :], self.grid_size)
            return output.permute(0, 3, 1, 2) if self.channels_last else output

        return module, to_map

    def fit_state_dict(self, state: dict[str, Tensor]) -> tuple[dict[str, str], dict[str, str]]:
        """Fit a timm-format state dict to this model, in place: the classifier's keys set aside, then timm's
        checkpoint filter for the architecture (original-format conversion, position embeddings resampled to this
        patch grid), unless it fails on the file. Returns (set-aside key -> reason, resized key -> how)."""
        heads = self.pretrained_cfg.get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        consumed = {key: CLASSIFIER_REASON for key in state if any(key.startswith(f"{head}.") for head in heads)}
        for key in consumed:
            del state[key]
        filter_fn = checkpoint_filter(type(self))
        if filter_fn is None:
            return consumed, {}
        shapes = {key: value.shape for key, value in state.items()}
        try:
            fitted = filter_fn(dict(state), self)
        except (KeyError, IndexError, ValueError, RuntimeError):  # not a layout the filter knows: the loader's key
            return consumed, {}  # and shape checks name what does not fit
        state.clear()
        state.update(fitted)
        resized = {key: f"resampled by timm's checkpoint filter from {tuple(shapes[key])} to {tuple(value.shape)}"
                   for key, value in state.items() if key in shapes and value.shape != shapes[key]}
        return consumed, resized


class TimmPyramidBackbone(TimmBackbone):
    """A timm model with feature levels at strides 4, 8, 16 and 32 (CNNs, Swin, ...): ``forward_pyramid`` feeds the
    pyramid heads as a ResNet's C2..C5 do."""

    pyramid_indices: list[int]
    pyramid_channels: list[int]

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        """Images ``(B, 3, H, W)`` -> maps ``(B, pyramid_channels[i], H / s, W / s)`` at strides s = 4, 8, 16, 32."""
        return self.forward_intermediates(x, indices=self.pyramid_indices, intermediates_only=True)


class TimmViTBackbone(TimmBackbone):
    """A timm model whose levels all share one stride (plain ViTs): the segmenter taps its blocks through the ViT
    pyramid neck, as for the built-in ViTs."""

    depth: int
    patch_size: int

    def forward_intermediates(self, x: Tensor, indices: Sequence[int] | None = None, **options) -> list[Tensor]:
        """Maps ``(B, C, h, w)`` of the blocks at ``indices``, before any norm and without prefix tokens (sonofm's
        contract); ``options`` go to timm's ``forward_intermediates``, whose other outputs they can ask for."""
        indices = None if indices is None else list(indices)
        return super().forward_intermediates(x, indices=indices, **({"intermediates_only": True} | options))


def create_timm_backbone(name: str, img_size: int = 224, **kwargs) -> TimmBackbone:
    """timm's ``timm/<name>`` for ``img_size`` px inputs with the backbone interface (see :class:`TimmBackbone`);
    ``kwargs`` go to ``timm.create_model``. Random weights: ``create_backbone(..., weights=FILE)`` loads a file."""
    model = build_timm_model(name, img_size, **kwargs)
    reductions = feature_reductions(model, name)
    stride = reductions[-1]
    if img_size % stride:
        raise SonofmError(f"--img-size must be a multiple of {stride}, the patch size of {name}, got {img_size}")
    interface, attributes = _interface(reductions, model.feature_info, name)
    model.__class__ = _with_interface(type(model), interface)
    model.backbone_name = name
    model.img_size = img_size
    model.embed_dim = model.num_features  # timm's embed_dim, where a model has one, is its first stage's width
    model.channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"
    model.timm_tokens = hasattr(model, "num_prefix_tokens")  # timm's ViTs count their prefix tokens
    model.num_prefix_tokens = model.num_prefix_tokens if model.timm_tokens else 1
    model.grid_size = (img_size // stride, img_size // stride)
    for key, value in attributes.items():
        setattr(model, key, value)
    _record_layer_ids(model)
    return model


def checkpoint_filter(timm_class: type) -> Callable[[dict, nn.Module], dict] | None:
    """The checkpoint converter of the module defining a timm model class (``checkpoint_filter_fn``), if any."""
    for cls in timm_class.__mro__:
        module = sys.modules.get(cls.__module__)
        if cls.__module__.startswith("timm.") and module is not None:
            return next((getattr(module, name) for name in FILTER_NAMES if hasattr(module, name)), None)
    return None


def _interface(reductions: list[int], feature_info: list[dict], name: str) -> tuple[type[TimmBackbone], dict]:
    """The mixin for a model with feature levels at strides ``reductions`` (described by timm's ``feature_info``),
    and the attributes it needs (or why it cannot segment)."""
    if set(PYRAMID_STRIDES) <= set(reductions):
        indices = [max(i for i, reduction in enumerate(reductions) if reduction == s) for s in PYRAMID_STRIDES]
        channels = [int(feature_info[i]["num_chs"]) for i in indices]
        return TimmPyramidBackbone, {"pyramid_indices": indices, "pyramid_channels": channels}
    if len(set(reductions)) == 1:
        return TimmViTBackbone, {"depth": len(reductions), "patch_size": reductions[0]}
    return TimmBackbone, {"segmentation_unsupported": (
        f"{name} cannot feed a segmentation head: its feature levels are at strides {sorted(set(reductions))}, "
        f"neither all of {', '.join(map(str, PYRAMID_STRIDES))} nor one stride as a plain ViT's")}


@cache
def _with_interface(timm_class: type, interface: type[TimmBackbone]) -> type:
    """The subclass of ``timm_class`` with ``interface`` first (one per pair, so instances share their class)."""
    return type(f"{interface.__name__}_{timm_class.__name__}", (interface, timm_class), {"__module__": __name__})


def _record_layer_ids(model: TimmBackbone) -> None:
    """``sonofm_layer_ids`` (timm's fine groups), ``num_layer_ids``, ``last_stage_layer_id`` and
    ``last_block_prefix``."""
    if hasattr(model, "group_matcher"):
        ids = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    else:
        ids = auto_group_layers(model)
    model.sonofm_layer_ids = ids
    model.num_layer_ids = max(ids.values()) + 1
    prefix = f"{model.feature_info[-1]['module']}."
    stage = {key: layer for key, layer in ids.items() if key.startswith(prefix)}
    model.last_stage_layer_id = min(stage.values(), default=model.num_layer_ids - 1)
    last_block = max(stage.values(), default=None)
    top = [key.split(".")[:-1] for key, layer in stage.items() if layer == last_block]
    model.last_block_prefix = ".".join(os.path.commonprefix(top)) + "." if top else None
