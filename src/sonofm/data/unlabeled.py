"""Unlabeled image pools for masked image modelling: folder scans with content de-duplication, and their dataset.

A scan lists image files (by extension) under each folder, recursively, in sorted order; hidden files and folders are
skipped, and so are segmentation mask folders (:data:`MASK_FOLDER_NAMES`), so a labelled dataset can be pooled whole. Each file's header is opened (pixels are not decoded) so that files that are not images are set aside,
and files whose bytes equal an earlier file's are dropped. Only the hashes and the path list are kept in memory.
A file whose header is fine but whose pixels are corrupt fails when the dataset reads it, naming the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sonofm.data.frames import expand_source, parse_frame_ref
from sonofm.data.image_io import INPUT_EXTENSIONS, image_size, is_image_file
from sonofm.data.packed import PackedImages, read_image_at
from sonofm.data.sampling import ItemKey, item_generator
from sonofm.data.transforms import ClassificationTransform
from sonofm.errors import SonofmError
from sonofm.extras import MissingExtra
from sonofm.progress import progress_bar

HASH_CHUNK = 1 << 20  # bytes read at a time when hashing a file
MASK_FOLDER_NAMES = frozenset({"mask", "masks", "label", "labels", "annotations", "ground_truth", "gt"})


@dataclass
class ImagePool:
    """Image files unique by content, in scan order, with what the scan found and set aside."""

    files: list[Path]
    found: int  # image files found, before duplicates and unreadable files were set aside
    duplicates: int
    skipped: list[tuple[Path, str]]  # unreadable files and why
    folders: int  # folders scanned (as given, sub-folders not counted)

    def summary(self) -> str:
        """One line, e.g. ``"120 images from 2 folders (3 duplicates by content skipped, 1 unreadable skipped)"``."""
        return (
            f"{len(self.files)} images from {self.folders} folders ({self.duplicates} duplicates by content skipped, "
            f"{len(self.skipped)} unreadable skipped)"
        )


def source_ids(files: Sequence[Path], folders: Sequence[str | Path]) -> tuple[list[int], list[str]]:
    """The source of each file: the index of the first of ``folders`` it lies under (a scan lists each file under
    the folder it came from), and the folders' names. Raises SonofmError for a file under none of them."""
    roots = [Path(folder) for folder in folders]
    ids = []
    for file in files:
        source = next((index for index, root in enumerate(roots) if file.is_relative_to(root)), None)
        if source is None:
            raise SonofmError(f"{file} lies under none of the --data folders {', '.join(map(str, folders))}")
        ids.append(source)
    return ids, [str(root) for root in roots]


def scan_image_folders(paths: Sequence[str | Path], progress: bool = False, dedup: bool = True) -> ImagePool:
    """Scan ``paths`` (folders) recursively for images; with ``dedup`` the first of several files with equal bytes
    is kept (without, every readable file is).

    Raises SonofmError for no paths, a path that is not a folder, or a folder holding no image files.
    """
    if not paths:
        raise SonofmError("no image folders given")
    candidates = [file for folder in paths for file in _folder_images(Path(folder))]
    seen: set[bytes] = set()
    pool = ImagePool(files=[], found=len(candidates), duplicates=0, skipped=[], folders=len(paths))
    for file in progress_bar(_expanded(candidates, pool), desc="scan images", unit="file", disable=not progress):
        try:
            image_size(file)
        except SonofmError as error:
            pool.skipped.append((file, str(error).removeprefix(f"cannot read image {file}: ")))
            continue
        digest = file_digest(file) if dedup else bytes(str(file), "utf-8")
        if digest in seen:
            pool.duplicates += 1
        else:
            seen.add(digest)
            pool.files.append(file)
    return pool


def _expanded(files: list[Path], pool: ImagePool) -> Iterator[Path]:
    """``files`` with cine and multi-frame DICOM sources expanded into frame references; unreadable ones skipped."""
    for file in files:
        try:
            yield from expand_source(file)
        except MissingExtra:
            raise
        except SonofmError as error:
            pool.skipped.append((file, str(error)))


def file_digest(path: Path) -> bytes:
    """BLAKE2b digest of the file's bytes, read in chunks; for a frame reference, of its source plus the index."""
    parsed = parse_frame_ref(path)
    if parsed is not None:
        source = parsed[0]
        stat = source.stat()
        whole = _source_digest(str(source), stat.st_mtime_ns, stat.st_size)
        return hashlib.blake2b(whole + f"frame {parsed[1]}".encode()).digest()
    return _bytes_digest(path)


@lru_cache(maxsize=8)  # the frames of one source are scanned in a row; mtime and size invalidate
def _source_digest(path: str, mtime_ns: int, size: int) -> bytes:
    return _bytes_digest(Path(path))


def _bytes_digest(path: Path) -> bytes:
    digest = hashlib.blake2b()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.digest()


def _folder_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, sorted; SonofmError if it is not a folder or holds none."""
    if not folder.is_dir():
        raise SonofmError(f"image folder not found (or not a folder): {folder}")
    images = sorted(_visible_files(folder))
    if not images:
        raise SonofmError(f"no image files in {folder} (looked for {', '.join(INPUT_EXTENSIONS)})")
    return images


def _visible_files(folder: Path) -> Iterator[Path]:
    """Image files below ``folder``, skipping hidden files, hidden and mask folders; symlinked folders followed once."""
    visited: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:
            dirs.clear()
            continue
        visited.add(real)
        dirs[:] = [name for name in dirs if not name.startswith(".") and name.lower() not in MASK_FOLDER_NAMES]
        yield from (Path(root, name) for name in files if is_image_file(Path(name)))


class PretrainImageDataset(Dataset):
    """Images as ``float32 (3, S, S)``, ImageNet-normalised; random resized crop, flip and jitter when ``train``.

    ``images``: image files, or a packed folder's :class:`PackedImages`; ``positions`` (optional) picks a subset.
    Keys are positions or ``(position, seed)`` from ``SeededEpochSampler``, so a resumed run augments as an
    uninterrupted one. Images are read when an item is asked for; a corrupt one raises SonofmError naming it.
    """

    def __init__(self, images: Sequence[str | Path] | PackedImages, img_size: int, train: bool = True,
                 positions: Sequence[int] | None = None) -> None:
        self.images = images if isinstance(images, PackedImages) else [Path(file) for file in images]
        self.positions = list(positions) if positions is not None else None
        self.transform = ClassificationTransform(img_size, train)

    def __len__(self) -> int:
        return len(self.positions) if self.positions is not None else len(self.images)

    def __getitem__(self, key: ItemKey) -> torch.Tensor:
        position, generator = item_generator(key)
        if self.positions is not None:
            position = self.positions[position]
        return self.transform(read_image_at(self.images, position), generator)
