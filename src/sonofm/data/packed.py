"""Reading a packed image folder (``sonofm data pack``): WebDataset tar shards plus an offset index.

A packed folder holds ``shard-NNNNNN.tar`` files in WebDataset's layout (each sample is ``KEY.npy``, the decoded
uint8 image as ``(H, W)`` or ``(H, W, 3)``, next to ``KEY.json``, its metadata), ``index.npz`` (per image: shard, key,
byte offset and length of its ``.npy`` member, source id) and ``pack.json`` (format, counts, source names).
Any WebDataset or tar reader streams the shards in order; sonofm reads single images by offset, so that its seeded
sampler (exact resume, source balance, sharding over ranks and workers) works on packs as on image folders, and a
process loads only the index arrays (about 22 bytes per image), never a header per file.

A pack can stay in an object store: a URL (``s3://bucket/pack``, ``gs://...``, ``https://...``: any filesystem of
fsspec whose package is installed, e.g. ``s3fs``) is read with one ranged request per image.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from sonofm.data.image_io import read_image
from sonofm.errors import SonofmError

PACK_FORMAT = "sonofm-pack/1"
MANIFEST = "pack.json"
INDEX = "index.npz"
METADATA = "metadata.csv"
SKIPPED = "skipped.csv"
HEADER_BYTES = 256  # an .npy header of a 2- or 3-axis uint8 array fits (NumPy pads it to 64 bytes)
OPEN_SHARDS = 64
"""Shard files kept open per process (least recently used closed first), well under the usual 1024-file limit."""


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def is_url(path: str | Path) -> bool:
    """True for a location such as ``s3://bucket/pack`` (read through fsspec), False for a local path."""
    return "://" in str(path)


def is_packed_folder(path: str | Path) -> bool:
    """True for a folder (or URL) written by ``sonofm data pack``."""
    if not is_url(path):
        return (Path(path) / MANIFEST).is_file()
    try:
        filesystem, root = fsspec.core.url_to_fs(str(path))
        return bool(filesystem.isfile(f"{root.rstrip('/')}/{MANIFEST}"))
    except (ImportError, ValueError, OSError) as error:
        raise SonofmError(f"cannot read {path}: {error}") from None


def packed_data(data: Sequence[str | Path]) -> PackedImages | None:
    """The packed folder that ``--data`` names, or None for image folders (a pack is never mixed with others)."""
    if not any(is_packed_folder(folder) for folder in data):
        return None
    if len(data) > 1:
        raise SonofmError("--data takes one packed folder (from `sonofm data pack`) or image folders, not several "
                          f"or a mix: {', '.join(map(str, data))}")
    return PackedImages(data[0])


class PackedImages:
    """The images of a packed folder, by position: ``read(i)`` is ``uint8 (H, W, 3)`` like ``read_image``.

    Local shard files are opened on first use in each process (loader workers open their own) and read with
    ``pread``, so several threads or workers never share a file position; a URL's shards are read with ranged
    requests of its fsspec filesystem.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = str(folder).rstrip("/") if is_url(folder) else Path(folder)
        self._filesystem: fsspec.AbstractFileSystem | None = None
        self._root = ""
        try:
            if is_url(folder):
                self._filesystem, self._root = fsspec.core.url_to_fs(str(self.folder))
            self.manifest: dict[str, Any] = json.loads(self._file(MANIFEST).decode("utf-8"))
            index = np.load(io.BytesIO(self._file(INDEX)))
            self.shards, self.keys, self.offsets, self.lengths, self.sources = (
                index["shard"], index["key"], index["offset"], index["length"], index["source"])
        except (ImportError, OSError, ValueError, KeyError) as error:
            raise SonofmError(f"cannot read packed folder {self.folder}: {error}") from None
        if self.manifest.get("format") != PACK_FORMAT:
            raise SonofmError(f"{self.folder}/{MANIFEST} is not a {PACK_FORMAT} manifest (format "
                              f"{self.manifest.get('format')!r})")
        self._handles: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()

    @property
    def source_names(self) -> list[str]:
        return list(self.manifest["sources"])

    def __len__(self) -> int:
        return len(self.offsets)

    def original_paths(self) -> list[Path]:
        """The file each image was packed from, in position order (from ``metadata.csv``)."""
        text = self._file(METADATA).decode("utf-8")
        return [Path(row["path"]) for row in csv.DictReader(io.StringIO(text, newline=""))]

    def key(self, position: int) -> str:
        """Image ``position``'s key in its shard (``KEY.npy``): unique in the pack, kept when images are skipped."""
        return f"{int(self.keys[position]):09d}"

    def name(self, position: int) -> str:
        """How errors and listings name an image: ``<folder>/shard-NNNNNN.tar#KEY``."""
        return f"{self.folder}/{shard_name(int(self.shards[position]))}#{self.key(position)}"

    def read(self, position: int) -> np.ndarray:
        """Image ``position`` as ``uint8 (H, W, 3)`` (a grayscale image is replicated to 3 channels)."""
        try:
            image = np.load(io.BytesIO(self._member(position)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise SonofmError(f"cannot read packed image {self.name(position)}: {error}") from None
        return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image

    def size(self, position: int) -> tuple[int, int]:
        """Image ``position``'s ``(width, height)`` (as ``image_size``), from its ``.npy`` header alone."""
        try:
            header = io.BytesIO(self._member(position, HEADER_BYTES))
            version = np.lib.format.read_magic(header)
            shape = np.lib.format.read_array_header_1_0(header)[0] if version == (1, 0) else \
                np.lib.format.read_array_header_2_0(header)[0]
        except (ValueError, OSError, EOFError) as error:
            raise SonofmError(f"cannot read packed image {self.name(position)}: {error}") from None
        return int(shape[1]), int(shape[0])

    def _member(self, position: int, limit: int | None = None) -> bytes:
        length, offset = int(self.lengths[position]), int(self.offsets[position])
        length = min(length, limit or length)
        shard = int(self.shards[position])
        if self._filesystem is None:
            return os.pread(self._handle(shard), length, offset)
        try:
            return self._filesystem.cat_file(f"{self._root}/{shard_name(shard)}", start=offset, end=offset + length)
        except OSError as error:
            raise SonofmError(f"cannot read packed image {self.name(position)}: {error}") from None

    def _file(self, name: str) -> bytes:
        """The bytes of the pack's file ``name`` (manifest, index, metadata)."""
        if self._filesystem is None:
            return (self.folder / name).read_bytes()
        return self._filesystem.cat_file(f"{self._root}/{name}")

    def _handle(self, shard: int) -> int:
        if os.getpid() != self._pid:  # a forked loader worker: open its own files
            self._handles, self._pid = OrderedDict(), os.getpid()
        if shard in self._handles:
            self._handles.move_to_end(shard)
            return self._handles[shard]
        path = self.folder / shard_name(shard)
        try:
            self._handles[shard] = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise SonofmError(f"cannot open shard {path}: {error.strerror}") from None
        while len(self._handles) > OPEN_SHARDS:
            os.close(self._handles.popitem(last=False)[1])
        return self._handles[shard]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": OrderedDict()}


def read_image_at(images: Sequence[Path] | PackedImages, position: int) -> np.ndarray:
    """Image ``position`` of a list of files or of a packed folder, as ``uint8 (H, W, 3)``."""
    if isinstance(images, PackedImages):
        return images.read(position)
    return read_image(images[position])
