"""Read cine loops (MP4, AVI, GIF) frame by frame with PyAV, as ``uint8 (H, W, 3)`` arrays.

Decoded clips are kept in a small per-process LRU cache, so random frame access from a DataLoader decodes each
clip once per worker instead of once per frame.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from sonofm.errors import SonofmError, first_line

CINE_EXTENSIONS = (".mp4", ".avi", ".gif")
"""File extensions (lower case) read as cine loops."""

CACHE_CLIPS = 4
"""Decoded clips kept per process."""

_cache: OrderedDict[tuple[str, float], list[np.ndarray]] = OrderedDict()
_lock = threading.Lock()  # validation decodes from several threads


def _decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as ``uint8 (H, W, 3)``; SonofmError naming the file on any failure."""
    import av

    if not path.is_file():
        raise SonofmError(f"cannot read cine {path}: file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SonofmError(f"cannot read cine {path}: no video stream")
            _require_plausible_size(container.streams.video[0], path)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except SonofmError:
        raise
    except Exception as error:  # av.error.* for corrupt or truncated data
        raise SonofmError(f"cannot read cine {path}: truncated or corrupt ({first_line(error)})") from None
    if not frames:
        raise SonofmError(f"cannot read cine {path}: no decodable frames")
    return frames


def _require_plausible_size(stream, path: Path) -> None:
    """Refuse a clip whose declared frame size exceeds the pixel limit of plain images (twice Pillow's
    ``MAX_IMAGE_PIXELS``) before any frame is decoded: a damaged or hostile header must not take gigabytes."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > 2 * Image.MAX_IMAGE_PIXELS:
        raise SonofmError(f"cannot read cine {path}: frames of {width}x{height} are too many pixels "
                          "(Pillow decompression-bomb limit)")


def cine_frames(path: str | Path) -> list[np.ndarray]:
    """All frames of a clip (cached; treat the arrays as read-only)."""
    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    frames = _decode_all(path)
    with _lock:
        _cache[key] = frames
        while len(_cache) > CACHE_CLIPS:
            _cache.popitem(last=False)
    return frames


def cine_frame_count(path: str | Path) -> int:
    """Number of decodable frames."""
    return len(cine_frames(path))


def read_cine_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame ``index`` as a writable ``uint8 (H, W, 3)`` copy."""
    frames = cine_frames(path)
    if not 0 <= index < len(frames):
        raise SonofmError(f"cannot read cine {path}: frame {index} out of range ({len(frames)} frames)")
    return frames[index].copy()
