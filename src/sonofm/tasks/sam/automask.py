"""``sonofm sam automask``: anatomy-id maps for every image of a folder from an A-SAM with its automatic prompter.

Output folder::

    OUT/masks/<relative path>.png   one id map per image at the image's own size (uint8; uint16 past 255 classes);
                                    for a packed folder (``sonofm data pack``) ``OUT/masks/<key>.png``
    OUT/classes.json                class names by id
    OUT/parts/shard-K-of-N.csv      rows written by shard K as it goes (the resume record)
    OUT/index.csv                   image, mask, classes_present, mean_confidence; written once every image is done
                                    (a packed image is named ``<pack>/shard-NNNNNN.tar#<key>``)

Resumable: an image with a row in any part file and its mask on disk is skipped. Shards (``--shard K/N``, or the
``RANK``/``WORLD_SIZE`` of a torchrun/DDP launch) take every N-th image starting at K, so no two write one file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from sonofm.atomic import atomic_write_json, atomic_write_png, atomic_write_text
from sonofm.data.datasets import ImageFileDataset
from sonofm.data.image_io import image_size
from sonofm.data.packed import PackedImages, is_packed_folder, is_url
from sonofm.data.unlabeled import scan_image_folders
from sonofm.data.work_shard import Shard
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.engine.trainer import Echo
from sonofm.errors import SonofmError
from sonofm.progress import progress_bar
from sonofm.runs.run_folder import RunFolder
from sonofm.sam.adapted import AdaptedSam, load_adapted_sam

INDEX_COLUMNS = ("image", "mask", "classes_present", "mean_confidence")


@dataclass
class AutomaskSummary:
    written: int
    already_done: int
    unreadable: int
    index: Path | None  # None until every shard has finished


@dataclass
class _Labelled:
    """The images to label: ``source`` (files or a pack), each one's ``names`` (the index's ``image`` column) and
    ``masks`` (mask paths relative to the output folder), by position."""

    source: list[Path] | PackedImages
    names: list[str]
    masks: list[Path]

    def size(self, position: int) -> tuple[int, int]:
        """``(width, height)`` of image ``position``."""
        if isinstance(self.source, PackedImages):
            return self.source.size(position)
        return image_size(self.source[position])


def automask(run_path: str | Path, images_dir: str | Path, out: str | Path, batch_size: int = 8,
             shard: Shard | None = None, precision: str = "auto", num_workers: int = 1, accelerator: str = "auto",
             progress: bool = True, echo: Echo = print) -> AutomaskSummary:
    """Write anatomy-id maps for every image under ``images_dir`` (recursively, or a packed folder) into ``out``."""
    run = RunFolder(Path(run_path))
    run.require_finished()
    model = load_adapted_sam(run.model)
    if model.prompter is None:
        raise SonofmError(f"run {run.path} has no automatic prompter; pass a `sonofm sam train-prompter` run")
    shard = shard or Shard.from_environment()
    root, out = (str(images_dir) if is_url(images_dir) else Path(images_dir).resolve()), Path(out)
    _claim_output(out, run.path.resolve(), root)
    labelled, unreadable = _labelled_images(root, echo)
    atomic_write_json(out / "classes.json", dict(enumerate(model.classes)))
    done = _finished_rows(out)
    mine = range(shard.index, len(labelled.names), shard.count)
    todo = [position for position in mine if labelled.names[position] not in done]
    echo(f"{len(labelled.names)} images in {root}; shard {shard.index}/{shard.count} has {len(mine)}, "
         f"{len(mine) - len(todo)} already done")
    _segment(model, labelled, todo, out, shard, batch_size, precision, num_workers, accelerator, progress)
    index = _write_index_when_complete(out, labelled.names)
    echo(f"index written: {index}" if index else "index.csv follows when every shard has finished")
    return AutomaskSummary(len(todo), len(mine) - len(todo), unreadable, index)


def _labelled_images(root: str | Path, echo: Echo) -> tuple[_Labelled, int]:
    """The images under ``root`` (a packed folder, local or a URL, or an image folder) and how many files could
    not be read."""
    if is_packed_folder(root):
        packed = PackedImages(root)
        return _Labelled(packed, [packed.name(position) for position in range(len(packed))],
                         [Path("masks") / f"{packed.key(position)}.png" for position in range(len(packed))]), 0
    if is_url(root):
        raise SonofmError(f"{root} is not a packed folder; image folders are read from local paths only")
    pool = scan_image_folders([root], dedup=False)
    for path, why in pool.skipped:
        echo(f"skipping unreadable image {path}: {why}")
    return _Labelled(pool.files, [str(path) for path in pool.files], _mask_names(pool.files, root)), len(pool.skipped)


def _claim_output(out: Path, run: Path, root: str | Path) -> None:
    """Record which run and folder ``out`` belongs to; refuse to mix in masks of another run or folder."""
    record = out / "automask.json"
    wanted = {"run": str(run), "images": str(root)}
    if record.is_file():
        found = json.loads(record.read_text(encoding="utf-8"))
        if found != wanted:
            raise SonofmError(f"{out} holds masks of run {found.get('run')} for {found.get('images')}; "
                              "choose another --out to label with another run or folder")
    elif out.is_dir() and any(out.iterdir()):
        raise SonofmError(f"--out {out} is a non-empty folder that is not an automask output; choose another --out")
    atomic_write_json(record, wanted)


def _mask_names(files: list[Path], root: Path) -> list[Path]:
    """Each image's mask path relative to the output folder: ``masks/<relative path with .png>``."""
    owners: dict[Path, Path] = {}
    for path in files:
        name = Path("masks") / path.relative_to(root).with_suffix(".png")
        if name in owners:
            raise SonofmError(f"{owners[name]} and {path} would both write {name}; rename one of them")
        owners[name] = path
    return list(owners)


def _segment(model: AdaptedSam, labelled: _Labelled, todo: list[int], out: Path, shard: Shard, batch_size: int,
             precision: str, num_workers: int, accelerator: str, progress: bool) -> None:
    if not todo:
        return
    device = _device(accelerator)
    model = model.to(device).eval()
    part = out / "parts" / shard.part_name
    part.parent.mkdir(parents=True, exist_ok=True)
    new_file = not part.is_file()
    loader = DataLoader(ImageFileDataset(labelled.source, model.img_size, positions=todo), batch_size=batch_size,
                        num_workers=num_workers)
    with part.open("a", newline="", encoding="utf-8") as handle, torch.inference_mode(), \
            progress_bar(total=len(todo), desc="automask", unit="img", disable=not progress) as bar:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(INDEX_COLUMNS)
        for images, positions in loader:
            with autocast_for(device, precision):
                scores = model.predict(images.to(device)).float()
            for score, index in zip(scores, positions.tolist()):
                position = todo[index]
                ids, confidence = anatomy_map(score, labelled.size(position))
                mask = labelled.masks[position]
                atomic_write_png(out / mask, ids.numpy().astype(np.uint8 if score.shape[0] <= 256 else np.uint16))
                present = ";".join(str(c) for c in torch.unique(ids).tolist() if c != 0)
                writer.writerow([labelled.names[position], mask.as_posix(), present, f"{confidence:.4f}"])
            handle.flush()
            bar.update(len(positions))


def anatomy_map(scores: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """Class scores (K, S, S) -> int64 id map at ``size`` = (width, height), and its mean confidence.

    A pixel's confidence is its class's probability, or 1 - the highest class probability where it is background.
    """
    width, height = size
    resized = F.interpolate(scores[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    ids = resized.argmax(dim=0)
    foreground = resized[1:].max(dim=0).values
    confidence = torch.where(ids == 0, 1 - foreground, foreground)
    return ids.cpu(), float(confidence.mean())


def _device(accelerator: str) -> torch.device:
    device = inference_device(accelerator)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def _finished_rows(out: Path) -> dict[str, dict[str, str]]:
    """Rows of every part file whose mask is on disk, by image path."""
    rows: dict[str, dict[str, str]] = {}
    for part in sorted((out / "parts").glob("shard-*.csv")):
        with part.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("mask") and (out / row["mask"]).is_file():
                    rows[row["image"]] = row
    return rows


def _write_index_when_complete(out: Path, names: list[str]) -> Path | None:
    rows = _finished_rows(out)
    if any(name not in rows for name in names):
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    writer.writerows([rows[name][column] for column in INDEX_COLUMNS] for name in names)
    return atomic_write_text(out / "index.csv", buffer.getvalue())
