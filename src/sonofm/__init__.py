"""sonofm: an open ultrasound foundation-model toolkit (USFM and ACLUS, reimplemented)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from sonofm.api import LoadedModel

__version__ = "0.1.0"


def load(path: str | Path) -> LoadedModel:
    """The model of a finished run folder, an exported model folder or a lone ``model.safetensors`` (see
    :func:`sonofm.api.load`)."""
    from sonofm.api import load as load_model  # imported on use: `import sonofm` stays light for the CLI

    return load_model(path)
