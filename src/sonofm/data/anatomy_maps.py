"""Pairing images with anatomy-id maps: mask folders mirroring image folders, or an automask ``index.csv``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from sonofm.data.image_io import image_size, is_image_file
from sonofm.data.unlabeled import scan_image_folders
from sonofm.errors import SonofmError

Pair = tuple[Path, Path]  # (image, anatomy-id map)


def find_anatomy_pairs(data: Sequence[str | Path], masks: Sequence[str | Path]) -> list[Pair]:
    """``(image, mask)`` pairs from image folders and their mask sources.

    ``masks`` is either one ``index.csv`` written by ``sonofm sam automask`` (columns ``image``, ``mask``; mask
    paths relative to the CSV's folder; then ``data`` only needs to hold those images), or one folder per ``data``
    folder whose files mirror the image folder's relative paths (any image extension; ``.png`` preferred). Every
    image needs a mask of its own size: a missing or mis-sized mask is an error naming both files.
    """
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
