"""Reading tensor maps from weight files (safetensors or torch pickles, never running pickled code) and writing
safetensors atomically."""

import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from sonofm.errors import SonofmError, first_line

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
CONTAINER_KEYS = ("state_dict", "model", "module", "encoder")
ACCEPTED_FORMATS = (
    "accepted formats: safetensors (.safetensors) or tensors saved with torch.save (.pth, .pt, .bin, .ckpt: "
    "a state dict or a checkpoint holding one)"
)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
PICKLE_PROTOCOL_OPCODE = 0x80
DETAIL_CHARS = 120
UNSAFE_ADVICE = ("weights_only", "safe_globals", "trust")  # PyTorch's hints that lead to unsafe loading


class UnreadableWeightsError(SonofmError):
    """A weights or checkpoint file that could not be read; ``reason`` says what the file is not."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read weights file {path}: {reason}; {ACCEPTED_FORMATS}")
        self.path = path
        self.reason = reason


@dataclass
class WeightsFile:
    """The tensors found in a file, its safetensors metadata, and every other entry with why it was set aside."""

    path: Path
    tensors: dict[str, Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    set_aside: dict[str, str] = field(default_factory=dict)


def read_weights_file(path: str | Path) -> WeightsFile:
    """The one entry for every weights format: safetensors, or a torch pickle (zip or legacy) read ``weights_only``.

    The format is recognised by the file's content, the suffix only has to be one of the accepted ones. Every failure
    raises :class:`SonofmError` naming the file; checkpoint containers are unwrapped down to the tensors.
    """
    path = _existing_weights_path(path)
    if _is_safetensors(path):
        return _read_safetensors(path)
    content = load_torch_file(path)
    entries, set_aside = _innermost_tensor_map(content, path)
    tensors = {key: value for key, value in entries.items() if isinstance(key, str) and _is_dense_tensor(value)}
    set_aside |= {str(key): _why_set_aside(key, value) for key, value in entries.items() if key not in tensors}
    return WeightsFile(path, tensors, set_aside=set_aside)


def read_weights_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file, read without its tensors; SonofmError for any other file."""
    path = _existing_weights_path(path)
    if not _is_safetensors(path):
        raise UnreadableWeightsError(path, "it is not a safetensors file, the format that carries metadata")
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # SafetensorError, OSError, ValueError, ... for a damaged header
        raise UnreadableWeightsError(path, f"it is not a valid safetensors file ({_detail(error)})") from None


def load_torch_file(path: str | Path) -> object:
    """The content of a file written by ``torch.save``, unpickled ``weights_only`` (tensors and plain containers,
    never code); :class:`UnreadableWeightsError` saying what the file is not on any failure."""
    path = Path(path)
    head = _file_head(path)
    if head.startswith(ZIP_MAGIC):
        _require_torch_archive(path)
    elif head[0] != PICKLE_PROTOCOL_OPCODE:
        raise UnreadableWeightsError(path, "it is neither a safetensors file nor a PyTorch file (unknown content)")
    # zip archives (torch >= 1.6) are memory-mapped: tensors are read once, when copied into the model. torch.load
    # reads any path ending in .safetensors as safetensors, so a misnamed file is passed as an open file instead.
    memory_map = head.startswith(ZIP_MAGIC) and path.suffix.lower() != SAFETENSORS_SUFFIX
    try:
        with warnings.catch_warnings(), path.open("rb") as handle:
            warnings.simplefilter("ignore")  # PyTorch warns about odd pickle protocols with its unsafe advice
            return torch.load(path if memory_map else handle, map_location="cpu", weights_only=True, mmap=memory_map)
    except Exception as error:  # the unpickler raises many types (IndexError, KeyError, ...) for corrupt data
        raise UnreadableWeightsError(path, _pickle_failure(error)) from None


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


def _existing_weights_path(path: str | Path) -> Path:
    """``path`` as a Path; SonofmError when it does not exist or its suffix is not one of the weights formats."""
    path = Path(path)
    if not path.exists():
        raise SonofmError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix != SAFETENSORS_SUFFIX and suffix not in TORCH_SUFFIXES and not path.is_dir():
        accepted = ", ".join((SAFETENSORS_SUFFIX, *TORCH_SUFFIXES))
        raise SonofmError(f"unsupported weights file type '{path.suffix}': {path} (use {accepted})")
    return path


def _file_head(path: Path, size: int = 16) -> bytes:
    """The first ``size`` bytes; :class:`UnreadableWeightsError` for a folder, an empty or an unreadable file."""
    if path.is_dir():
        raise UnreadableWeightsError(path, "it is a folder, not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(size)
    except OSError as error:
        raise UnreadableWeightsError(path, f"it cannot be opened ({error.strerror or error})") from None
    if not head:
        raise UnreadableWeightsError(path, "the file is empty")
    return head


def _is_safetensors(path: Path) -> bool:
    """True when the file starts like safetensors: an 8-byte header length, then the JSON header's ``{``."""
    return _file_head(path)[8:9] == b"{"


def _require_torch_archive(path: Path) -> None:
    """Refuse a zip file that is not a ``torch.save`` archive (which holds ``<folder>/data.pkl``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UnreadableWeightsError(path, f"it is a damaged zip archive ({_detail(error)})") from None
    if not any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names):
        raise UnreadableWeightsError(path, "it is a zip archive but not a PyTorch checkpoint (no data.pkl inside)")


def _read_safetensors(path: Path) -> WeightsFile:
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # SafetensorError, OSError, ValueError, ... for a damaged header or data
        raise UnreadableWeightsError(path, f"it is not a valid safetensors file ({_detail(error)})") from None
    return WeightsFile(path, tensors, metadata)


def _pickle_failure(error: BaseException) -> str:
    """What a failed ``weights_only`` unpickling says about the file, without PyTorch's advice to load unsafely."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(error))
    if refused:
        return (f"it holds pickled Python objects, not just tensors ({refused[1]}); "
                "sonofm reads tensors only and never runs code from a weights file")
    reason = re.search(r"WeightsUnpickler error: ([^\n]*)", str(error))
    detail = _detail(error) if reason is None else _without_unsafe_advice(reason[1][:DETAIL_CHARS])
    return "it is not a readable PyTorch file (truncated or corrupt" + (f": {detail})" if detail else ")")


def _detail(error: BaseException) -> str:
    """The first line of ``error`` (shortened), or the error type; empty when it carries PyTorch's unsafe advice."""
    return _without_unsafe_advice(first_line(error, DETAIL_CHARS))


def _without_unsafe_advice(text: str) -> str:
    """``text``, or nothing when it mentions a way to load the file unsafely."""
    unsafe = any(word in text for word in UNSAFE_ADVICE) or text.startswith("Weights only load failed")
    return "" if unsafe else text


def _is_dense_tensor(value: object) -> bool:
    return isinstance(value, Tensor) and value.layout == torch.strided


def _why_set_aside(key: object, value: object) -> str:
    if not isinstance(value, Tensor):
        return "not a tensor"
    return "not a dense tensor" if isinstance(key, str) else "its key is not a name"


def _innermost_tensor_map(content: object, path: Path) -> tuple[Mapping, dict[str, str]]:
    """Descend through ``state_dict``/``model``/``module``/``encoder`` containers to the mapping holding tensors.

    Returns that mapping and the entries passed by on the way (epoch, optimizer state, ...), named
    ``container/key`` below the top level, each with a reason.
    """
    set_aside: dict[str, str] = {}
    trail = ""
    visited: set[int] = set()
    while isinstance(content, Mapping) and not any(isinstance(value, Tensor) for value in content.values()):
        container = next((key for key in CONTAINER_KEYS if isinstance(content.get(key), Mapping)), None)
        if container is None or id(content) in visited:
            keys = ", ".join(str(key) for key in list(content)[:8])
            raise SonofmError(f"no tensors found in weights file {path} (top-level keys: {keys or 'none'})")
        visited.add(id(content))
        reason = f"checkpoint entry beside '{trail}{container}'"
        set_aside |= {f"{trail}{key}": reason for key in content if key != container}
        trail += f"{container}/"
        content = content[container]
    if not isinstance(content, Mapping):
        raise SonofmError(f"weights file {path} holds a {type(content).__name__}, not a map of named tensors")
    return content, set_aside
