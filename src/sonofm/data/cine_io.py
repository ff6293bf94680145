"""Read cine loops (MP4, AVI, GIF) frame by frame with PyAV, as ``uint8 (H, W, 3)`` arrays.

A frame is decoded by seeking: the container's packet index (read once per clip without decoding, kept in a small
per-process LRU cache) gives each frame's presentation time and the keyframes; reading frame ``i`` seeks to the last
keyframe at or before it and decodes forward to it, so it costs at most one group of pictures, not the whole clip.
"""

from __future__ import annotations

import bisect
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from sonofm.errors import SonofmError, first_line
from sonofm.extras import require_extra

CINE_EXTENSIONS = (".mp4", ".avi", ".gif")
"""File extensions (lower case) read as cine loops."""

CACHE_CLIPS = 1024
"""Clip indexes kept per process (a few KiB each)."""


@dataclass(frozen=True)
class ClipIndex:
    """Presentation times of a clip's frames, in display order, and those of its keyframes (stream time base)."""

    stamps: tuple[int, ...]
    keyframes: tuple[int, ...]

    def seek_stamp(self, index: int) -> int:
        """The last keyframe at or before frame ``index`` (the first frame when the index marks none)."""
        target = self.stamps[index]
        position = bisect.bisect_right(self.keyframes, target)
        return self.keyframes[position - 1] if position else self.stamps[0]


_cache: OrderedDict[tuple[str, float], ClipIndex] = OrderedDict()
_lock = threading.Lock()  # validation decodes from several threads


Opener = Callable[[], str | BinaryIO]
"""What ``av.open`` reads a clip from: its path, or a fresh file object over its bytes (one per opening)."""


def _read_index(path: Path) -> ClipIndex:
    """The packet index of ``path``'s first video stream, read without decoding; SonofmError naming the file on any
    failure."""
    if not path.is_file():
        raise SonofmError(f"cannot read cine {path}: file not found")
    return _index_of(lambda: str(path), path)


def _index_of(opener: Opener, path: Path | str) -> ClipIndex:
    """The packet index of the clip ``opener`` opens; ``path`` names it in errors."""
    av = require_extra("av", f"cine input ({path})")
    try:
        with av.open(opener()) as container:
            if not container.streams.video:
                raise SonofmError(f"cannot read cine {path}: no video stream")
            stream = container.streams.video[0]
            _require_plausible_size(stream, path)
            stamps, keyframes = [], []
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or stamp is None:  # the demuxer's end-of-stream marker
                    continue
                stamps.append(stamp)
                if packet.is_keyframe:
                    keyframes.append(stamp)
    except SonofmError:
        raise
    except Exception as error:  # av.error.* for corrupt or truncated data
        raise SonofmError(f"cannot read cine {path}: truncated or corrupt ({first_line(error)})") from None
    if not stamps:
        raise SonofmError(f"cannot read cine {path}: no decodable frames")
    return ClipIndex(tuple(sorted(stamps)), tuple(sorted(keyframes)))


def clip_index(path: str | Path) -> ClipIndex:
    """The (cached) packet index of a clip."""
    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    index = _read_index(path)
    with _lock:
        _cache[key] = index
        while len(_cache) > CACHE_CLIPS:
            _cache.popitem(last=False)
    return index


def _decoded_frames(container, stream) -> Iterator:
    """The frames the decoder returns from the container's current position (one place to count them in tests)."""
    yield from container.decode(stream)


def _decode_frame(opener: Opener, path: Path | str, index: ClipIndex, frame: int) -> np.ndarray:
    """Frame ``frame`` of the clip ``opener`` opens (``path`` names it in errors): seek to its keyframe, decode
    forward to its presentation time."""
    av = require_extra("av", f"cine input ({path})")

    target = index.stamps[frame]
    try:
        with av.open(opener()) as container:
            stream = container.streams.video[0]
            container.seek(index.seek_stamp(frame), stream=stream, backward=True)
            for decoded in _decoded_frames(container, stream):
                stamp = decoded.pts if decoded.pts is not None else decoded.dts
                if stamp == target:
                    return decoded.to_ndarray(format="rgb24")
                if stamp is not None and stamp > target:
                    break
    except Exception as error:  # av.error.* for corrupt or truncated data
        raise SonofmError(f"cannot read cine {path}: frame {frame} is truncated or corrupt "
                          f"({first_line(error)})") from None
    raise SonofmError(f"cannot read cine {path}: frame {frame} could not be decoded")


def _require_plausible_size(stream, path: Path) -> None:
    """Refuse a clip whose declared frame size exceeds the pixel limit of plain images (twice Pillow's
    ``MAX_IMAGE_PIXELS``) before any frame is decoded: a damaged or hostile header must not take gigabytes."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > 2 * Image.MAX_IMAGE_PIXELS:
        raise SonofmError(f"cannot read cine {path}: frames of {width}x{height} are too many pixels "
                          "(Pillow decompression-bomb limit)")


def cine_frame_count(path: str | Path) -> int:
    """Number of frames, from the container's packet index (nothing is decoded)."""
    return len(clip_index(path).stamps)


def read_cine_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame ``index`` as a writable ``uint8 (H, W, 3)`` array."""
    clip = clip_index(path)
    return _checked_frame(lambda: str(path), path, clip, index)


def _checked_frame(opener: Opener, path: Path | str, clip: ClipIndex, index: int) -> np.ndarray:
    if not 0 <= index < len(clip.stamps):
        raise SonofmError(f"cannot read cine {path}: frame {index} out of range ({len(clip.stamps)} frames)")
    return _decode_frame(opener, path, clip, index)


@dataclass(frozen=True)
class CineInMemory:
    """A cine loop held in memory (e.g. an upload): its packet index, and frames decoded on request by seeking, as
    :func:`read_cine_frame` does."""

    data: bytes
    name: str
    index: ClipIndex

    @property
    def frames(self) -> int:
        return len(self.index.stamps)

    def frame(self, index: int) -> np.ndarray:
        return _checked_frame(lambda: io.BytesIO(self.data), self.name, self.index, index)


def read_cine_bytes(data: bytes, name: str) -> CineInMemory:
    """Index a cine loop held in memory, with the checks of the path readers; ``name`` only names it in errors."""
    return CineInMemory(data, name, _index_of(lambda: io.BytesIO(data), name))
