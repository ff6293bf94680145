"""Backbone names and the functions that build them."""

from collections.abc import Callable

from torch import nn

BackboneBuilder = Callable[..., nn.Module]

_BUILDERS: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: make ``builder(img_size=..., **kwargs)`` available as ``create_backbone(name, ...)``."""

    def add(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _BUILDERS:
            raise ValueError(f"backbone name registered twice: {name}")
        _BUILDERS[name] = builder
        return builder

    return add


def list_backbones() -> list[str]:
    """All registered backbone names, sorted."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> BackboneBuilder | None:
    """The builder registered under ``name``, or None."""
    return _BUILDERS.get(name)
