"""Backbone names, the functions that build them, and the patch size each one's input size must be a multiple of."""

from collections.abc import Callable

from torch import nn

BackboneBuilder = Callable[..., nn.Module]

_BUILDERS: dict[str, BackboneBuilder] = {}
_PATCH_SIZES: dict[str, int] = {}


def register_backbone(name: str, *, patch_size: int) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: make ``builder(img_size=..., **kwargs)`` available as ``create_backbone(name, ...)``.

    ``patch_size``: the side in pixels of the square each output token covers (a ViT's patch, a CNN's output
    stride); input sizes must be multiples of it.
    """

    def add(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _BUILDERS:
            raise ValueError(f"backbone name registered twice: {name}")
        _BUILDERS[name] = builder
        _PATCH_SIZES[name] = patch_size
        return builder

    return add


def list_backbones() -> list[str]:
    """All registered backbone names, sorted."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> BackboneBuilder | None:
    """The builder registered under ``name``, or None."""
    return _BUILDERS.get(name)


def get_patch_size(name: str) -> int | None:
    """The patch size registered with ``name``, or None."""
    return _PATCH_SIZES.get(name)
