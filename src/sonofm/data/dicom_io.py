"""Read DICOM files (single- or multi-frame, uncompressed or JPEG) as ``uint8 (H, W, 3)`` frames.

Only technical, non-identifying fields ever leave this module (:func:`dicom_metadata`); patient and study
identifiers are never read into samples, logs or outputs.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from sonofm.errors import SonofmError, first_line
from sonofm.extras import MissingExtra, require_extra

DICOM_EXTENSIONS = (".dcm", ".dicom")
"""File extensions (lower case) read as DICOM."""

_CM_UNITS = 3  # SequenceOfUltrasoundRegions PhysicalUnitsXDirection code for centimetres


NO_DECODER = "plugins are missing dependencies"
"""What pydicom says when none of its pixel decoders for a transfer syntax is installed."""

CACHE_FILES = 4
"""Parsed DICOM files (with pixel data) kept per process, so reading frame after frame parses a file once."""


def _open(path: Path, pixels: bool = True):
    """The pydicom dataset of ``path`` (cached, treat as read-only); SonofmError naming the file when it is missing,
    not DICOM, corrupt or holds no image."""
    try:
        stat = path.stat()
        dataset = _open_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size, pixels)
    except FileNotFoundError:
        raise SonofmError(f"cannot read DICOM {path}: file not found") from None
    except _Unreadable as reason:
        raise SonofmError(f"cannot read DICOM {path}: {reason}") from None
    return _require_image(dataset, path)


def _require_image(dataset, name: Path | str):
    """``dataset``, or SonofmError naming the file when its header declares no image."""
    if "Rows" not in dataset or "Columns" not in dataset:
        raise SonofmError(f"cannot read DICOM {name}: holds no image (no Rows/Columns)")
    return dataset


class _Unreadable(Exception):
    """Why a file could not be parsed (turned into a SonofmError naming the path by :func:`_open`)."""


@lru_cache(maxsize=CACHE_FILES)
def _open_cached(name: str, mtime_ns: int, size: int, pixels: bool):
    return _parse(name, name, pixels)


def _parse(source: str | BinaryIO, name: Path | str, pixels: bool):
    """The pydicom dataset read from ``source`` (a path or a file object); _Unreadable when it cannot be parsed."""
    pydicom = require_extra("pydicom", f"DICOM input ({name})")
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(source, stop_before_pixels=not pixels)
    except InvalidDicomError:
        raise _Unreadable("not a DICOM file") from None
    except Exception as error:  # pydicom raises many types for truncated data
        raise _Unreadable(f"truncated or corrupt ({first_line(error)})") from None


@dataclass(frozen=True)
class _Geometry:
    rows: int
    columns: int
    frames: int


def _geometry(dataset, path: Path | str, file_bytes: int | None = None) -> _Geometry:
    """Rows, columns and frames from the header; SonofmError naming the file when they are damaged, exceed the
    pixel limit of plain images (twice Pillow's ``Image.MAX_IMAGE_PIXELS``) or declare more frames than the file
    (``file_bytes`` long; by default the size of the file at ``path``) could hold."""
    try:
        frames = max(int(dataset.get("NumberOfFrames", 1) or 1), 1)
        geometry = _Geometry(int(dataset.Rows), int(dataset.Columns), frames)
        frame_bytes = _least_frame_bytes(dataset, geometry)
    except Exception as error:  # pydicom converts values on access: a damaged one raises here
        raise SonofmError(f"cannot read DICOM {path}: damaged header ({first_line(error)})") from None
    if geometry.rows < 1 or geometry.columns < 1:
        raise SonofmError(f"cannot read DICOM {path}: holds no image ({geometry.rows}x{geometry.columns} pixels)")
    if geometry.rows * geometry.columns > 2 * Image.MAX_IMAGE_PIXELS:
        raise SonofmError(f"cannot read DICOM {path}: {geometry.columns}x{geometry.rows} is too many pixels "
                          "(Pillow decompression-bomb limit)")
    file_bytes = Path(path).stat().st_size if file_bytes is None else file_bytes
    if geometry.frames * frame_bytes > file_bytes:
        raise SonofmError(f"cannot read DICOM {path}: declares {geometry.frames} frames of {geometry.columns}x"
                          f"{geometry.rows}, more than its {file_bytes} bytes can hold (truncated or corrupt)")
    return geometry


def _least_frame_bytes(dataset, geometry: _Geometry) -> int:
    """The fewest bytes one frame can take in the file: its full size when stored raw, one byte when compressed,
    deflated or stored in an unknown transfer syntax."""
    syntax = getattr(dataset.get("file_meta"), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_transfer_syntax or syntax.is_compressed or syntax.is_deflated:
        return 1
    bits = int(dataset.get("BitsAllocated", 8) or 8)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    return max(geometry.rows * geometry.columns * samples * bits // 8, 1)


def dicom_frame_count(path: str | Path) -> int:
    """Number of frames (``NumberOfFrames``, 1 when absent)."""
    path = Path(path)
    return _geometry(_open(path, pixels=False), path).frames


def dicom_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the header."""
    path = Path(path)
    geometry = _geometry(_open(path, pixels=False), path)
    return geometry.columns, geometry.rows


def read_dicom_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """Frame ``index`` of a DICOM file as ``uint8 (H, W, 3)``.

    Modality rescale and the first VOI window are applied when present; otherwise data wider than 8 bits is
    stretched over its own min..max. MONOCHROME1 is inverted; YBR colour is converted to RGB.
    """
    path = Path(path)
    dataset = _open(path)
    return _decode_frame(dataset, path, _geometry(dataset, path).frames, index)


def _decode_frame(dataset, path: Path | str, frames: int, index: int) -> np.ndarray:
    """Frame ``index`` of a parsed DICOM holding ``frames`` frames (see :func:`read_dicom_frame`)."""
    if not 0 <= index < frames:
        raise SonofmError(f"cannot read DICOM {path}: frame {index} out of range ({frames} frames)")
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

        frame = pixel_array(dataset, index=index if frames > 1 else None, raw=False)
        photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
        if frame.ndim == 3 and frame.shape[-1] == 3:
            return _to_uint8_color(frame, dataset)
        if frame.ndim != 2:
            raise SonofmError(f"cannot read DICOM {path}: unexpected frame shape {frame.shape}")
        values = apply_modality_lut(frame, dataset)
        windowed = "WindowCenter" in dataset or "VOILUTSequence" in dataset
        if windowed:
            values = apply_voi_lut(values, dataset)
        gray = _to_uint8_gray(np.asarray(values, dtype=np.float64), dataset, windowed)
    except SonofmError:
        raise
    except Exception as error:
        raise SonofmError(f"cannot read DICOM {path}: {_decode_failure(error, dataset)}") from None
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[:, :, None], 3, axis=2)


def _decode_failure(error: Exception, dataset) -> str:
    """Why pydicom could not decode the pixel data; when no installed decoder handles its transfer syntax (JPEG
    Lossless, 12-bit JPEG, JPEG-LS: pylibjpeg-libjpeg), the extra that adds one."""
    if NO_DECODER not in str(error):
        return f"cannot decode pixel data ({first_line(error)})"
    syntax = getattr(getattr(dataset.get("file_meta"), "TransferSyntaxUID", None), "name", "its transfer syntax")
    return (f"no decoder installed for {syntax} pixel data (Pillow decodes JPEG Baseline); the GPL-3 `jpeg-gpl` "
            "extra adds JPEG Lossless, 12-bit JPEG and JPEG-LS: pip install 'sonofm[jpeg-gpl]'")


def _to_uint8_gray(values: np.ndarray, dataset, windowed: bool) -> np.ndarray:
    """``uint8 (H, W)``: 8-bit data as is, windowed or wider data stretched over its range."""
    if not windowed and int(dataset.get("BitsStored", 8)) <= 8 and values.min() >= 0 and values.max() <= 255:
        return values.astype(np.uint8)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * 255.0 / (high - low)).astype(np.uint8)


def _to_uint8_color(frame: np.ndarray, dataset) -> np.ndarray:
    """``uint8 (H, W, 3)`` RGB from a colour frame (pydicom converts YBR to RGB when decoding)."""
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    bits = int(dataset.get("BitsStored", 8))
    scaled = np.clip(frame.astype(np.int64), 0, (1 << bits) - 1) * 255 // max((1 << bits) - 1, 1)
    return scaled.astype(np.uint8)


@dataclass(frozen=True)
class DicomInMemory:
    """A DICOM file parsed from its bytes (e.g. an upload): frames decoded on request as :func:`read_dicom_frame`
    decodes them, and the pixel size."""

    dataset: Any
    name: str
    frames: int
    pixel_size_mm: float | None

    def frame(self, index: int) -> np.ndarray:
        return _decode_frame(self.dataset, self.name, self.frames, index)


def read_dicom_bytes(data: bytes, name: str) -> DicomInMemory:
    """Parse a DICOM file held in memory, with the header checks of the path readers; ``name`` only names the file
    in errors. Only technical fields are used (see :func:`dicom_metadata`)."""
    try:
        dataset = _require_image(_parse(io.BytesIO(data), name, pixels=True), name)
    except _Unreadable as reason:
        raise SonofmError(f"cannot read DICOM {name}: {reason}") from None
    frames = _geometry(dataset, name, len(data)).frames
    try:
        size = pixel_size_mm(dataset)
    except Exception as error:  # a damaged value raises when pydicom converts it
        raise SonofmError(f"cannot read DICOM {name}: damaged header ({first_line(error)})") from None
    return DicomInMemory(dataset, name, frames, size)


def pixel_size_mm(dataset) -> float | None:
    """Pixel size in mm: ``PixelSpacing`` (row spacing), else the first ultrasound region's PhysicalDeltaX in cm."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = dataset.get(keyword)
        if spacing:
            return float(spacing[0])
    for region in dataset.get("SequenceOfUltrasoundRegions", []) or []:
        if region.get("PhysicalUnitsXDirection") == _CM_UNITS and region.get("PhysicalDeltaX"):
            return abs(float(region.PhysicalDeltaX)) * 10.0
    return None


def dicom_case_id(path: str | Path) -> str | None:
    """A one-way digest of the file's PatientID (else its StudyInstanceUID): equal for one patient's files, never the
    identifier itself; None when neither is set or the header cannot be read."""
    try:
        dataset = _open(Path(path), pixels=False)
        value = str(dataset.get("PatientID", "") or dataset.get("StudyInstanceUID", "") or "").strip()
    except MissingExtra:
        raise
    except (SonofmError, Exception):  # a damaged value raises when pydicom converts it; validation names the file
        return None
    return f"dicom-{hashlib.blake2b(value.encode(), digest_size=8).hexdigest()}" if value else None


def dicom_metadata(path: str | Path) -> dict[str, str]:
    """Non-identifying technical fields of a DICOM file, as strings.

    Keys: ``pixel_size_mm`` (when known), ``frames``, ``rows``, ``cols``, ``modality``, ``photometric``,
    ``bits_stored``. Patient, study, institution and date fields are never returned.
    """
    path = Path(path)
    dataset = _open(path, pixels=False)
    geometry = _geometry(dataset, path)
    try:
        meta = {
            "frames": str(geometry.frames),
            "rows": str(geometry.rows),
            "cols": str(geometry.columns),
            "modality": str(dataset.get("Modality", "")),
            "photometric": str(dataset.get("PhotometricInterpretation", "")),
            "bits_stored": str(dataset.get("BitsStored", "")),
        }
        size = pixel_size_mm(dataset)
    except Exception as error:  # a damaged value raises when pydicom converts it
        raise SonofmError(f"cannot read DICOM {path}: damaged header ({first_line(error)})") from None
    if size is not None:
        meta["pixel_size_mm"] = f"{size:.6g}"
    return meta
