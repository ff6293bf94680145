"""Image files held in memory (uploads): a plain image, a DICOM file or a cine loop decoded from its bytes with the
checks of the path readers. The file name's extension picks the reader, as it does for paths; the name is never
opened, it only appears in errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from sonofm.data.cine_io import CINE_EXTENSIONS, read_cine_bytes
from sonofm.data.dicom_io import DICOM_EXTENSIONS, read_dicom_bytes
from sonofm.data.image_io import IMAGE_EXTENSIONS, INPUT_EXTENSIONS, decode_image
from sonofm.errors import SonofmError

KINDS = {**dict.fromkeys(IMAGE_EXTENSIONS, "image"), **dict.fromkeys(DICOM_EXTENSIONS, "dicom"),
         **dict.fromkeys(CINE_EXTENSIONS, "cine")}
"""File extension (lower case) -> kind of file."""


class UnsupportedFileType(SonofmError):
    """A file name whose extension names no format sonofm reads."""


@dataclass(frozen=True)
class FileInMemory:
    """A decoded file: its kind (``image``, ``dicom`` or ``cine``), frame count, pixel size (DICOM only, when its
    header gives one) and its frames as ``uint8 (H, W, 3)``, decoded on request."""

    name: str
    kind: str
    frames: int
    pixel_size_mm: float | None
    read_frame: Callable[[int], np.ndarray]

    def frame(self, index: int) -> np.ndarray:
        if not 0 <= index < self.frames:
            raise SonofmError(f"{self.name} has no frame {index} ({self.frames} frames)")
        return self.read_frame(index)


def file_kind(name: str) -> str:
    """``image``, ``dicom`` or ``cine`` from the name's extension; UnsupportedFileType naming the formats read."""
    kind = KINDS.get(PurePath(name).suffix.lower())
    if kind is None:
        raise UnsupportedFileType(f"cannot read {name}: unsupported file type; use one of "
                                  f"{', '.join(INPUT_EXTENSIONS)}")
    return kind


def decode_file(data: bytes, name: str) -> FileInMemory:
    """The file ``data`` named ``name``, with its first frame decoded (so a damaged file fails here, in one line
    naming it)."""
    kind = file_kind(name)
    if kind == "image":
        image = decode_image(data, name)
        return FileInMemory(name, kind, 1, None, lambda _index: image)
    if kind == "dicom":
        dicom = read_dicom_bytes(data, name)
        decoded = FileInMemory(name, kind, dicom.frames, dicom.pixel_size_mm, dicom.frame)
    else:
        cine = read_cine_bytes(data, name)
        decoded = FileInMemory(name, kind, cine.frames, None, cine.frame)
    decoded.frame(0)
    return decoded
