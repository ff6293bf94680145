"""``model.safetensors``: a task model's weights plus the metadata needed to rebuild it (task, backbone, classes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from sonofm.errors import SonofmError
from sonofm.runs.atomic import atomic_write


def save_model(model: torch.nn.Module, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``model.state_dict()`` atomically; metadata values are JSON-encoded strings."""
    return save_tensors(model.state_dict(), path, metadata)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON-encoded ``metadata`` as safetensors, atomically."""
    state = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    encoded = {key: json.dumps(value) for key, value in metadata.items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=encoded))


def read_model_metadata(path: str | Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (OSError, SafetensorError) as error:
        raise SonofmError(f"cannot read model file {path}: {error}") from None
    return decode_metadata(raw)


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """Metadata as :func:`save_tensors` wrote it (JSON-encoded values) -> Python values."""
    return {key: json.loads(value) for key, value in raw.items()}


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise SonofmError(f"cannot read model file {path}: {error}") from None
