"""``model.safetensors``: a task model's weights plus the metadata needed to rebuild it (task, backbone, classes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from sonofm.errors import SonofmError, first_line
from sonofm.models.state_dict_file import read_weights_file, read_weights_metadata
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
    """The decoded metadata of a ``model.safetensors``; SonofmError naming the file when it cannot be read."""
    raw = read_weights_metadata(path)
    try:
        return decode_metadata(raw)
    except ValueError as error:  # json.JSONDecodeError
        reason = f"its metadata is not valid JSON ({first_line(error)})"
        raise SonofmError(f"cannot read model file {path}: {reason}") from None


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """Metadata as :func:`save_tensors` wrote it (JSON-encoded values) -> Python values."""
    return {key: json.loads(value) for key, value in raw.items()}


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors``, read by the one weights loader (SonofmError naming a bad file)."""
    return read_weights_file(path).tensors
