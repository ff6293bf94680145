"""``sonofm data pack``: image folders -> WebDataset tar shards of decoded (optionally resized) images + an index.

The folders are scanned as pretraining scans them (recursively, mask folders left out, files with equal bytes kept
once) and the list is saved, so a rerun packs the same images. Shard ``i`` holds the images at positions
``i * shard_size ...`` of that list; each shard is written to a temporary file and renamed when complete, with its
part of the index beside it, so an interrupted pack resumes at the first unfinished shard. An image that cannot be
decoded is left out and listed in ``skipped.csv`` (path, reason); nothing is dropped silently. The last step joins
the parts into ``index.npz``, ``metadata.csv`` and ``pack.json`` (see :mod:`sonofm.data.packed`).

Several processes can pack at once (``--shard K/N``, or one per rank under torchrun): process ``K`` writes shards
``K, K + N, ...``; whichever finds every shard done when it finishes joins them (one at a time, by a lock file).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sonofm.atomic import atomic_write, atomic_write_json, atomic_write_text
from sonofm.data.dicom_io import dicom_metadata
from sonofm.data.frames import is_dicom_file, parse_frame_ref
from sonofm.data.image_io import read_image
from sonofm.data.packed import INDEX, MANIFEST, METADATA, PACK_FORMAT, SKIPPED, shard_name
from sonofm.data.source_table import SourceColumn
from sonofm.data.unlabeled import file_digest, scan_image_folders, source_ids
from sonofm.data.work_shard import Shard
from sonofm.errors import SonofmError
from sonofm.progress import progress_bar

FILE_LIST = "files.txt"
JOIN_LOCK = "join.lock"
WORK_FILES = re.compile(r"(shard-\d{6}(\.tar|\.npz|\.csv|\.skipped\.csv)|files\.txt|scan_skipped\.csv|join\.lock"
                        r"|\..*\.tmp)$")  # what an unfinished pack holds
METADATA_COLUMNS = ("key", "path", "height", "width", "source", "pixel_size_mm", "blake2b")


@dataclass
class PackResult:
    """What a pack run wrote: images packed, shards, images skipped as unreadable, the folder; ``finished`` is False
    when other processes' shards are still missing (their last one to finish joins the pack)."""

    images: int
    shards: int
    skipped: int
    folder: Path
    finished: bool = True


def pack_images(inputs: list[str | Path], out: str | Path, img_size: int | None = None, shard_size: int = 10_000,
                progress: bool = True, shard: Shard | None = None, source_from: str = "folder") -> PackResult:
    """Pack every image under ``inputs`` into ``out``.

    ``img_size``: resize so that the shorter side is this many pixels (aspect kept), or keep the size. ``shard``:
    this process's share when several pack at once (default: from torchrun's ``RANK``/``WORLD_SIZE``, else all).
    ``source_from``: ``folder`` (each input folder is one source, e.g. an organ or a site) or ``TABLE.csv:COLUMN``
    (each image's source is its row's value; see :mod:`sonofm.data.source_table`).
    """
    shard = shard or Shard.from_environment()
    if shard_size < 1:
        raise SonofmError(f"--shard-size must be >= 1, got {shard_size}")
    if img_size is not None and img_size < 8:
        raise SonofmError(f"--img-size must be >= 8, got {img_size}")
    if source_from != "folder":
        SourceColumn.parse(source_from)  # a malformed value fails before the scan
    out = Path(out)
    files, sources, names = _scanned_files(inputs, out, progress, source_from)
    shards = -(-len(files) // shard_size)
    mine = range(shard.index, shards, shard.count)
    total = sum(min(shard_size, len(files) - index * shard_size) for index in mine)
    with progress_bar(total=total, desc="pack", unit="img", disable=not progress) as bar:
        for index in mine:
            first = index * shard_size
            members = list(range(first, min(first + shard_size, len(files))))
            if not (out / _part(index, ".npz")).is_file():
                _write_shard(out, index, [(position, files[position], sources[position]) for position in members],
                             img_size)
            bar.update(len(members))
    if not all((out / _part(index, ".npz")).is_file() for index in range(shards)):
        return PackResult(total, len(mine), 0, out, finished=False)
    if shard.count == 1:  # alone: a lock left by a joining process that was killed is stale
        (out / JOIN_LOCK).unlink(missing_ok=True)
    try:
        lock = os.open(out / JOIN_LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # another process is joining
        return PackResult(total, len(mine), 0, out, finished=False)
    try:
        return _join_parts(out, shards, names, img_size, source_from)
    finally:
        os.close(lock)
        (out / JOIN_LOCK).unlink(missing_ok=True)


def _scanned_files(inputs: list[str | Path], out: Path, progress: bool, source_from: str
                   ) -> tuple[list[Path], list[int], list[str]]:
    """The saved file list of an unfinished pack of the same inputs and sources, else a fresh scan (saved once its
    sources are known); with each file's source id and the source names."""
    listing = out / FILE_LIST
    if (out / MANIFEST).is_file():
        raise SonofmError(f"{out} is already a finished pack; choose another --out")
    if listing.is_file():
        saved = json.loads(listing.read_text(encoding="utf-8"))
        if saved["inputs"] != [str(path) for path in inputs]:
            raise SonofmError(f"{out} holds an unfinished pack of other folders ({', '.join(saved['inputs'])}); "
                              "delete it or choose another --out")
        if saved.get("source_from", "folder") != source_from:
            raise SonofmError(f"{out} holds an unfinished pack with --source-from {saved.get('source_from')}; "
                              "rerun with the same --source-from, or choose another --out")
        files = [Path(path) for path in saved["files"]]
        return files, *_source_ids(files, inputs, source_from)
    if out.is_dir() and any(not WORK_FILES.match(path.name) for path in out.iterdir()):
        raise SonofmError(f"--out {out} is a folder that holds other files; choose a new or empty folder")
    pool = scan_image_folders(inputs, progress=progress)
    if not pool.files:
        raise SonofmError(f"no usable images in {', '.join(map(str, inputs))}")
    sources, names = _source_ids(pool.files, inputs, source_from)
    out.mkdir(parents=True, exist_ok=True)
    _write_skipped(out / "scan_skipped.csv", [(str(path), reason) for path, reason in pool.skipped])
    atomic_write_text(listing, json.dumps({"inputs": [str(path) for path in inputs], "source_from": source_from,
                                           "files": [str(path) for path in pool.files]}))
    return pool.files, sources, names


def _source_ids(files: list[Path], inputs: list[str | Path], source_from: str) -> tuple[list[int], list[str]]:
    if source_from == "folder":
        return source_ids(files, inputs)
    return SourceColumn.parse(source_from).source_ids(files)


def _part(shard: int, suffix: str) -> str:
    return shard_name(shard).removesuffix(".tar") + suffix


def _write_shard(out: Path, shard: int, members: list[tuple[int, Path, int]], img_size: int | None) -> None:
    """One shard: the tar file, then its metadata and skipped rows, then its index part (the "done" mark)."""
    rows, skipped, keys, member_sources = [], [], [], []

    def write_tar(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for position, path, source in members:
                try:
                    image = _decoded(path, img_size)
                except SonofmError as error:
                    skipped.append((str(path), str(error)))
                    continue
                key = f"{position:09d}"
                meta = {"key": key, "path": str(path), "height": image.shape[0], "width": image.shape[1],
                        "source": source, "pixel_size_mm": _pixel_size(path), "blake2b": file_digest(path).hex()}
                buffer = io.BytesIO()
                np.save(buffer, image, allow_pickle=False)
                _add_member(tar, f"{key}.npy", buffer.getvalue())
                _add_member(tar, f"{key}.json", json.dumps(meta).encode("utf-8"))
                rows.append(meta)
                keys.append(key)
                member_sources.append(source)

    tar_path = atomic_write(out / shard_name(shard), write_tar)
    offsets, lengths = _member_offsets(tar_path, keys)
    with (out / _part(shard, ".csv")).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writerows(rows)
    _write_skipped(out / _part(shard, ".skipped.csv"), skipped)

    def write_index(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez(handle, key=np.asarray([int(key) for key in keys], np.int32), offset=offsets, length=lengths,
                     source=np.asarray(member_sources, np.int16))

    atomic_write(out / _part(shard, ".npz"), write_index)


def _decoded(path: Path, img_size: int | None) -> np.ndarray:
    """``uint8 (H, W)`` for grayscale pictures (3 equal channels), else ``(H, W, 3)``; resized when asked."""
    image = read_image(path)
    if img_size is not None:
        height, width = image.shape[:2]
        scale = img_size / min(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    if np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 0], image[:, :, 2]):
        return np.ascontiguousarray(image[:, :, 0])
    return image


def _pixel_size(path: Path) -> str:
    """The DICOM pixel size in mm of ``path`` (or of its source file), else an empty string."""
    parsed = parse_frame_ref(path)
    source = parsed[0] if parsed else path
    if not is_dicom_file(source):
        return ""
    try:
        return dicom_metadata(source).get("pixel_size_mm", "")
    except SonofmError:
        return ""


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _member_offsets(tar_path: Path, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Byte offset and length of each key's ``.npy`` member, read back from the finished tar's headers."""
    found = {}
    with tarfile.open(tar_path, "r") as tar:
        for member in tar:
            if member.name.endswith(".npy"):
                found[member.name.removesuffix(".npy")] = (member.offset_data, member.size)
    return (np.asarray([found[key][0] for key in keys], np.int64),
            np.asarray([found[key][1] for key in keys], np.int32))


def _write_skipped(path: Path, rows: list[tuple[str, str]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)

    atomic_write(path, write)


def _join_parts(out: Path, shards: int, source_names: list[str], img_size: int | None, source_from: str
                ) -> PackResult:
    """``index.npz``, ``metadata.csv``, ``skipped.csv`` and, last, ``pack.json`` from the shards' parts."""
    parts = [np.load(out / _part(shard, ".npz")) for shard in range(shards)]
    shard_ids = np.concatenate([np.full(len(part["offset"]), shard, np.int32) for shard, part in enumerate(parts)])

    def write_index(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez(handle, shard=shard_ids, key=np.concatenate([part["key"] for part in parts]),
                     offset=np.concatenate([part["offset"] for part in parts]),
                     length=np.concatenate([part["length"] for part in parts]),
                     source=np.concatenate([part["source"] for part in parts]))

    atomic_write(out / INDEX, write_index)
    skipped_parts = [out / "scan_skipped.csv", *(out / _part(shard, ".skipped.csv") for shard in range(shards))]
    skipped = _concatenate_csv(out, skipped_parts, SKIPPED, ("path", "reason"))
    _concatenate_csv(out, [out / _part(shard, ".csv") for shard in range(shards)], METADATA, METADATA_COLUMNS)
    atomic_write_json(out / MANIFEST, {"format": PACK_FORMAT, "images": len(shard_ids), "shards": shards,
                                       "sources": source_names, "source_from": source_from, "img_size": img_size})
    for shard in range(shards):
        for suffix in (".npz", ".csv", ".skipped.csv"):
            (out / _part(shard, suffix)).unlink()
    (out / "scan_skipped.csv").unlink()
    (out / FILE_LIST).unlink()
    return PackResult(len(shard_ids), shards, skipped, out)


def _concatenate_csv(out: Path, parts: list[Path], name: str, header: tuple[str, ...]) -> int:
    """Write ``name`` from the header and every part's rows; the number of rows."""
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            handle.write(",".join(header) + "\n")
            for part in parts:
                text = part.read_text(encoding="utf-8")
                count += sum(1 for _ in csv.reader(io.StringIO(text)))
                handle.write(text)

    atomic_write(out / name, write)
    return count
