"""Reading tensor maps from weight files (safetensors or torch pickles) and writing safetensors atomically."""

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from sonofm.errors import SonofmError

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
CONTAINER_KEYS = ("state_dict", "model", "module", "encoder")


@dataclass
class WeightsFile:
    """The tensors found in a file, its safetensors metadata, and every other entry with why it was set aside."""

    path: Path
    tensors: dict[str, Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    set_aside: dict[str, str] = field(default_factory=dict)


def read_weights_file(path: str | Path) -> WeightsFile:
    """Load a ``.safetensors`` file or a torch pickle (``weights_only``), unwrapping checkpoint containers."""
    path = Path(path)
    if not path.is_file():
        raise SonofmError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _read_torch_pickle(path)
    accepted = ", ".join((SAFETENSORS_SUFFIX, *TORCH_SUFFIXES))
    raise SonofmError(f"unsupported weights file type '{path.suffix}': {path} (use {accepted})")


def write_safetensors_atomic(tensors: dict[str, Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """Write ``tensors`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_safetensors(path: Path) -> WeightsFile:
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise SonofmError(f"cannot read weights file {path}: {_first_line(error)}") from None
    return WeightsFile(path, tensors, metadata)


def _read_torch_pickle(path: Path) -> WeightsFile:
    try:
        # zip archives (torch >= 1.6) are memory-mapped: tensors are read once, when copied into the model
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise SonofmError(f"cannot read weights file {path}: {_first_line(error)}") from None
    entries, set_aside = _innermost_tensor_map(content, path)
    tensors = {key: value for key, value in entries.items() if isinstance(value, Tensor)}
    set_aside |= {str(key): "not a tensor" for key, value in entries.items() if not isinstance(value, Tensor)}
    return WeightsFile(path, tensors, set_aside=set_aside)


def _innermost_tensor_map(content: object, path: Path) -> tuple[Mapping, dict[str, str]]:
    """Descend through ``state_dict``/``model``/``module``/``encoder`` containers to the mapping holding tensors.

    Returns that mapping and the entries passed by on the way (epoch, optimizer state, ...), named
    ``container/key`` below the top level, each with a reason.
    """
    set_aside: dict[str, str] = {}
    trail = ""
    while isinstance(content, Mapping) and not any(isinstance(value, Tensor) for value in content.values()):
        container = next((key for key in CONTAINER_KEYS if isinstance(content.get(key), Mapping)), None)
        if container is None:
            keys = ", ".join(str(key) for key in list(content)[:8])
            raise SonofmError(f"no tensors found in weights file {path} (top-level keys: {keys or 'none'})")
        reason = f"checkpoint entry beside '{trail}{container}'"
        set_aside |= {f"{trail}{key}": reason for key in content if key != container}
        trail += f"{container}/"
        content = content[container]
    if not isinstance(content, Mapping):
        raise SonofmError(f"weights file {path} holds a {type(content).__name__}, not a map of named tensors")
    return content, set_aside


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
