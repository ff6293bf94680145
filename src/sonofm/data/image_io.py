"""Read ultrasound images and integer masks from disk, failing with one clear line per bad file.

Images always come back as ``uint8 (H, W, 3)``; masks as ``int64 (H, W)`` class ids. Every failure (missing file,
unsupported format, truncated or corrupt data, unusable pixel mode) raises :class:`SonofmError` naming the file.
Files are decoded fully, so a truncated file fails here rather than inside a DataLoader worker; this relies on
Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False``.

DICOM files (``.dcm``/``.dicom``) and frame references (``clip.mp4/clip_f0007``, see :mod:`sonofm.data.frames`)
are read too; a cine or multi-frame DICOM path given directly reads its first frame. :func:`decode_image` decodes a
plain image file held in memory (an upload) with the same checks.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from sonofm.data.cine_io import CINE_EXTENSIONS, read_cine_frame
from sonofm.data.dicom_io import DICOM_EXTENSIONS, dicom_size, read_dicom_frame
from sonofm.data.frames import is_cine_file, is_dicom_file, parse_frame_ref
from sonofm.errors import SonofmError, first_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File extensions (lower case) of plain images (and masks)."""

INPUT_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS + CINE_EXTENSIONS
"""File extensions (lower case) the scanners and layout readers accept as image sources."""

_FORMATS = {"PNG", "JPEG", "MPO", "BMP", "TIFF"}  # MPO: the multi-picture JPEG some cameras write
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def is_image_file(path: Path) -> bool:
    """True for a visible file name ending in one of :data:`INPUT_EXTENSIONS` (case-insensitive)."""
    return path.suffix.lower() in INPUT_EXTENSIONS and not path.name.startswith(".")


def _read_special(path: Path) -> np.ndarray | None:
    """``uint8 (H, W, 3)`` of a frame reference, DICOM or cine path; ``None`` for a plain image path."""
    parsed = parse_frame_ref(path)
    if parsed is not None:
        source, index = parsed
        return read_cine_frame(source, index) if is_cine_file(source) else read_dicom_frame(source, index)
    if is_dicom_file(path):
        return read_dicom_frame(path, 0)
    if is_cine_file(path):
        return read_cine_frame(path, 0)
    return None


def _decode(source: Path | BinaryIO, what: str, name: Path | str) -> Image.Image:
    """Open and fully decode ``source`` (a path, or a file's bytes in memory); ``what`` ("image" or "mask") names the
    file kind and ``name`` the file in errors.

    A header declaring more than twice ``Image.MAX_IMAGE_PIXELS`` pixels is refused before any pixel is decoded.
    """
    try:
        with Image.open(source) as opened:
            if opened.format not in _FORMATS:
                raise SonofmError(
                    f"cannot read {what} {name}: unsupported format {opened.format} (use PNG, JPEG, BMP or TIFF)"
                )
            opened.load()
            return opened.copy()  # closing the file releases the decoded data, so keep a copy
    except SonofmError:
        raise
    except Exception as error:  # Pillow's decoders raise many types for damaged files
        raise SonofmError(f"cannot read {what} {name}: {_open_failure(error)}") from None


def _open_failure(error: Exception) -> str:
    """Why Pillow could not open or decode a file, in words (the library's own message last)."""
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, IsADirectoryError):
        return "is a directory"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file or unsupported format"
    if isinstance(error, Image.DecompressionBombError):
        return "too many pixels (Pillow decompression-bomb limit)"
    return f"truncated or corrupt ({first_line(error)})"


def _convert(image: Image.Image, mode: str, path: Path | str, what: str) -> Image.Image:
    """``image`` converted to ``mode``; SonofmError naming the file when Pillow cannot convert its pixel mode."""
    try:
        return image.convert(mode)
    except (ValueError, OSError) as error:
        reason = f"unsupported pixel mode {image.mode} ({first_line(error)})"
        raise SonofmError(f"cannot read {what} {path}: {reason}") from None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``uint8 (H, W, 3)``.

    PNG, JPEG, BMP and TIFF are accepted. Grayscale is replicated to 3 channels, palettes are expanded and alpha
    is dropped (pixels keep their colour values). 16-bit data is mapped to 8 bits over the full 16-bit range
    (``round(v * 255 / 65535)``), not stretched per image, so intensities stay comparable between files.
    """
    path = Path(path)
    special = _read_special(path)
    if special is not None:
        return special
    return _rgb_pixels(_decode(path, "image", path), path)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """A plain image file held in memory (PNG, JPEG, BMP or TIFF bytes, e.g. an upload) as ``uint8 (H, W, 3)``,
    decoded and checked as :func:`read_image` does; ``name`` only names the file in errors."""
    return _rgb_pixels(_decode(io.BytesIO(data), "image", name), name)


def _rgb_pixels(image: Image.Image, path: Path | str) -> np.ndarray:
    """A decoded image as ``uint8 (H, W, 3)`` (see :func:`read_image`); ``path`` names the file in errors."""
    if image.mode in _SIXTEEN_BIT_MODES:
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise SonofmError(f"cannot read image {path}: floating-point pixels are not supported (save as 8 or 16 bit)")
    if image.mode in ("P", "PA"):
        image = _convert(image, "RGBA", path, "image")
    return np.array(_convert(image, "RGB", path, "image"), dtype=np.uint8)  # a writable copy


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file as ``int64 (H, W)`` class ids.

    The pixel values are the ids (palette masks give their palette indices). A mask holding exactly the values
    {0, 255} or {255} is taken as binary and mapped to {0, 1}. An RGB(A) mask is accepted only when its colour
    channels are equal; a gray + alpha mask keeps its gray channel.
    """
    path = Path(path)
    image = _decode(path, "mask", path)
    if image.mode == "F":
        raise SonofmError(f"cannot read mask {path}: floating-point pixels; masks must be integer class ids")
    if image.mode in ("LA", "La", "PA"):
        ids = np.asarray(image, dtype=np.int64)[:, :, 0]
    elif image.mode in ("1", "L", "P") or image.mode in _SIXTEEN_BIT_MODES:
        ids = np.asarray(image).astype(np.int64)
    else:
        rgb = np.asarray(_convert(image, "RGB", path, "mask"))
        if np.any(rgb[:, :, 1:] != rgb[:, :, :1]):
            raise SonofmError(f"mask {path} is RGB with distinct channels; masks must be single-channel class ids")
        ids = rgb[:, :, 0].astype(np.int64)
    if ids.size and ids.min() < 0:
        raise SonofmError(f"cannot read mask {path}: negative values; masks must be class ids >= 0")
    if ids.size and ids.max() == 255 and np.all((ids == 0) | (ids == 255)):
        return (ids == 255).astype(np.int64)
    return ids


def unique_ids(mask: np.ndarray) -> list[int]:
    """Sorted class ids present in an ``int64 (H, W)`` mask from :func:`read_mask`."""
    if mask.size and mask.max() > 65535:  # bincount would allocate one counter per possible id
        return np.unique(mask).tolist()
    return np.flatnonzero(np.bincount(mask.ravel())).tolist()


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header without decoding the pixels (a cine is decoded)."""
    path = Path(path)
    parsed = parse_frame_ref(path)
    if parsed is not None or is_dicom_file(path) or is_cine_file(path):
        source = parsed[0] if parsed else path
        if is_dicom_file(source):
            return dicom_size(source)
        height, width = read_cine_frame(source, parsed[1] if parsed else 0).shape[:2]
        return width, height
    try:
        with Image.open(path) as opened:
            return opened.size
    except Exception as error:  # as in _decode: Pillow raises many types for damaged headers
        raise SonofmError(f"cannot read image {path}: {_open_failure(error)}") from None
