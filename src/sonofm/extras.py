"""Optional extras: the libraries outside the base install, and the one-line error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from sonofm.errors import SonofmError

EXTRA_OF = {
    "segment_anything": "sam",
    "pydicom": "dicom",
    "av": "video",
    "onnx": "onnx",
    "onnx_ir": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "pyarrow": "parquet",
    "starlette": "serve",
    "uvicorn": "serve",
}
"""Top-level module of an optional library -> the extra that installs it (``pip install 'sonofm[EXTRA]'``)."""


class MissingExtra(SonofmError):
    """An optional library the command needs is not installed. It is no problem of one input file: code that skips
    or lists unreadable files one by one lets it through, so the command ends with this one line."""


def missing_extra(what: str, extra: str) -> MissingExtra:
    """``"<what> needs the `<extra>` extra: pip install 'sonofm[<extra>]'"``."""
    return MissingExtra(f"{what} needs the `{extra}` extra: pip install 'sonofm[{extra}]'")


def require_extra(module: str, what: str) -> ModuleType:
    """``import module``, or MissingExtra saying that ``what`` needs its extra when the library is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = as_missing_extra(error, what)
        if missing is None:
            raise
        raise missing from None


def as_missing_extra(error: ModuleNotFoundError, what: str) -> MissingExtra | None:
    """The MissingExtra for an import that failed because an optional library is absent; None for any other
    module (a broken base install keeps its traceback)."""
    extra = EXTRA_OF.get((error.name or "").partition(".")[0])
    return None if extra is None else missing_extra(what, extra)
