"""``model.safetensors``: a task model's weights plus the metadata needed to rebuild it (task, backbone, classes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from sonofm.atomic import atomic_write
from sonofm.errors import SonofmError, first_line
from sonofm.models.state_dict_file import read_weights_file, read_weights_metadata

PRETRAINED_BACKBONE_KEY = "sonofm_backbone"  # written by save_backbone_weights, the export of a pretraining run


def save_model(model: torch.nn.Module, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``model.state_dict()`` atomically; metadata values are JSON-encoded strings."""
    return save_tensors(model.state_dict(), path, metadata)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON-encoded ``metadata`` as safetensors, atomically."""
    state = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    encoded = {key: json.dumps(value) for key, value in metadata.items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=encoded))


def read_model_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of a task run's ``model.safetensors``; SonofmError naming the file when it cannot be
    read, and saying how to use it when it is the backbone exported by a pretraining run."""
    raw = read_weights_metadata(path)
    if PRETRAINED_BACKBONE_KEY in raw and "task" not in raw:
        raise SonofmError(pretraining_run_message(Path(path), raw[PRETRAINED_BACKBONE_KEY]))
    try:
        return decode_metadata(raw)
    except ValueError as error:  # json.JSONDecodeError
        reason = f"its metadata is not valid JSON ({first_line(error)})"
        raise SonofmError(f"cannot read model file {path}: {reason}") from None


def pretraining_run_message(path: Path, backbone: str) -> str:
    """Why the ``model.safetensors`` of a pretraining run (MIM, ACLUS) cannot be used as a task model, and how it is
    used instead."""
    return (f"run {path.parent} is a pretraining run: {path} holds a {backbone} backbone without a task head; "
            f"fine-tune it first with `sonofm finetune cls|seg|enhance --model {backbone} --weights {path}` "
            "and use the fine-tuned run")


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """Metadata as :func:`save_tensors` wrote it (JSON-encoded values) -> Python values."""
    return {key: json.loads(value) for key, value in raw.items()}


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``model.safetensors``, read by the one weights loader (SonofmError naming a bad file)."""
    return read_weights_file(path).tensors
