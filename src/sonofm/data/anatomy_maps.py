"""Pairing images with anatomy-id maps: mask folders mirroring image folders, or an automask ``index.csv``; for a
packed folder, the maps ``sonofm sam automask`` wrote for it (``<key>.png``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonofm.data.image_io import image_size, is_image_file, read_mask
from sonofm.data.packed import PackedImages, packed_data, read_image_at
from sonofm.data.unlabeled import scan_image_folders
from sonofm.errors import SonofmError

Pair = tuple[Path, Path]  # (image, anatomy-id map)


@dataclass
class AnatomyPairs:
    """Images and their anatomy-id maps, by position.

    ``images``: image files, or a packed folder; ``masks``: one map file per image file, or for a pack the folder
    that holds ``<key>.png`` for each packed image (the maps are found when read, never listed up front).
    """

    images: list[Path] | PackedImages
    masks: list[Path] | Path

    def __len__(self) -> int:
        return len(self.images)

    def image_name(self, position: int) -> str:
        return self.images.name(position) if isinstance(self.images, PackedImages) else str(self.images[position])

    def mask_path(self, position: int) -> Path:
        if isinstance(self.masks, list):
            return self.masks[position]
        path = self.masks / f"{self.images.key(position)}.png"
        if not path.is_file():
            raise SonofmError(f"no anatomy map for {self.image_name(position)}: {path} not found")
        return path

    def read(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``position`` as ``uint8 (H, W, 3)`` and its map as ``int64 (H, W)`` ids; sizes must agree."""
        image, mask_path = read_image_at(self.images, position), self.mask_path(position)
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise SonofmError(f"anatomy map {mask_path} size {mask.shape[1]}x{mask.shape[0]} != image "
                              f"{self.image_name(position)} size {image.shape[1]}x{image.shape[0]}")
        return image, mask


def find_anatomy_pairs(data: Sequence[str | Path], masks: Sequence[str | Path]) -> AnatomyPairs:
    """Images and their anatomy maps from ``--data`` and ``--masks``.

    ``masks`` is either one ``index.csv`` written by ``sonofm sam automask`` (columns ``image``, ``mask``; mask
    paths relative to the CSV's folder; then ``data`` only needs to hold those images), or one folder per ``data``
    folder whose files mirror the image folder's relative paths (any image extension; ``.png`` preferred). Every
    image needs a mask of its own size: a missing or mis-sized mask is an error naming both files.

    For one packed folder in ``data``, ``masks`` is automask's output for that pack (its folder, its ``masks``
    folder or its ``index.csv``): only the first image's map is checked here, the others as they are read.
    """
    packed = packed_data(data)
    if packed is not None:
        return _pack_pairs(packed, masks)
    if len(masks) == 1 and Path(masks[0]).suffix.lower() == ".csv":
        pairs = _pairs_from_index(Path(masks[0]))
    else:
        if len(masks) != len(data):
            raise SonofmError(f"--masks needs one folder per --data folder ({len(data)}) or one index.csv; "
                              f"got {len(masks)}")
        pairs = [pair for images, folder in zip(data, masks) for pair in _pairs_from_folders(Path(images), Path(folder))]
    if not pairs:
        raise SonofmError("no image with an anatomy map found")
    for image, mask in pairs:
        if image_size(image) != image_size(mask):
            raise SonofmError(f"anatomy map {mask} is {'x'.join(map(str, image_size(mask)))} but its image {image} "
                              f"is {'x'.join(map(str, image_size(image)))}")
    return AnatomyPairs([image for image, _ in pairs], [mask for _, mask in pairs])


def _pack_pairs(packed: PackedImages, masks: Sequence[str | Path]) -> AnatomyPairs:
    if len(masks) != 1:
        raise SonofmError(f"--masks for a packed folder is one automask output of it; got {len(masks)} paths")
    given = Path(masks[0])
    folder = given.parent / "masks" if given.suffix.lower() == ".csv" else given
    if (folder / "masks").is_dir() and (folder / "automask.json").is_file():
        folder = folder / "masks"
    if not folder.is_dir():
        raise SonofmError(f"anatomy-map folder not found (or not a folder): {folder}")
    pairs = AnatomyPairs(packed, folder)
    image_width_height, mask = packed.size(0), pairs.mask_path(0)
    if image_size(mask) != image_width_height:
        raise SonofmError(f"anatomy map {mask} is {'x'.join(map(str, image_size(mask)))} but its image "
                          f"{packed.name(0)} is {'x'.join(map(str, image_width_height))}; were the maps made "
                          "for this pack?")
    return pairs


def _pairs_from_folders(images: Path, masks: Path) -> list[Pair]:
    if not masks.is_dir():
        raise SonofmError(f"mask folder not found (or not a folder): {masks}")
    pool = scan_image_folders([images], dedup=False)
    if pool.skipped:
        path, why = pool.skipped[0]
        raise SonofmError(f"unreadable image {path}: {why}")
    pairs = []
    for image in pool.files:
        relative = image.relative_to(images)
        mask = _mirrored_mask(masks, relative)
        if mask is None:
            raise SonofmError(f"no anatomy map for {image} (looked for {masks / relative.with_suffix('.png')})")
        pairs.append((image, mask))
    return pairs


def _mirrored_mask(masks: Path, relative: Path) -> Path | None:
    preferred = masks / relative.with_suffix(".png")
    if preferred.is_file():
        return preferred
    folder = (masks / relative).parent
    if folder.is_dir():
        for candidate in sorted(folder.glob(f"{relative.stem}.*")):
            if is_image_file(candidate):
                return candidate
    return None


def _pairs_from_index(index: Path) -> list[Pair]:
    if not index.is_file():
        raise SonofmError(f"mask index not found: {index}")
    with index.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "mask"} <= set(reader.fieldnames or []):
            raise SonofmError(f"{index} needs columns image and mask (as `sonofm sam automask` writes)")
        rows = list(reader)
    pairs = []
    for line, row in enumerate(rows, start=2):
        image, mask = Path(row["image"]), index.parent / row["mask"]
        for path, what in ((image, "image"), (mask, "mask")):
            if not path.is_file():
                raise SonofmError(f"{index} line {line}: {what} not found: {path}")
        pairs.append((image, mask))
    return pairs
