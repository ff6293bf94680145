"""The phantom data set on disk: classification and segmentation views of the same frames, a manifest, labels.csv.

Subjects (groups) are rendered in parallel, one per job, each from its own seeded generator, so the files do not
depend on the number of processes.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import secrets
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sonofm.data.phantom.anatomy import PHANTOM_CLASSES, draw_subject, perturb_subject
from sonofm.data.phantom.arguments import check_int
from sonofm.data.phantom.bmode import MIN_SIZE, PHANTOM_MASK_CLASSES, render_subject
from sonofm.errors import SonofmError

PHANTOM_VERSION = 1
MANIFEST_NAME = "phantom.json"
# Fewer subjects than this per process: render in this process (starting a worker costs about as much as 4 subjects).
_MIN_JOBS_PER_WORKER = 8


def write_phantom_dataset(
    out_dir: str | Path,
    n_per_class: int = 48,
    size: int = 128,
    seed: int = 0,
    frames_per_group: int = 4,
) -> Path:
    """Write the phantom set; return out_dir.

    Layout (8-bit grayscale PNGs; both views hold the same images):
    ``cls/<class>/<name>.png`` + ``cls/labels.csv`` and ``seg/images/<name>.png``, ``seg/masks/<name>.png`` +
    ``seg/labels.csv``; both CSVs have columns ``name,class,group``; ``phantom.json`` records the parameters.
    Each class has ``ceil(n_per_class / frames_per_group)`` groups (simulated subjects) of ``frames_per_group``
    frames (the last one shorter if it does not divide), named like ``cyst_g007_f2``, group ``cyst_g007``.
    A complete folder written with the same parameters is returned untouched. The set is written into a hidden
    sibling folder that is renamed at the end, so an interrupted run never leaves a folder that looks complete.
    """
    out = Path(out_dir).absolute()
    params = {
        "generator": "sonofm.data.phantom",
        "version": PHANTOM_VERSION,
        "n_per_class": check_int("n_per_class", n_per_class, 1),
        "size": check_int("size", size, MIN_SIZE),
        "seed": check_int("seed", seed, 0),
        "frames_per_group": check_int("frames_per_group", frames_per_group, 1),
    }
    if _is_complete(out, params):
        return Path(out_dir)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        partial.mkdir(parents=True)
    except OSError as exc:
        raise SonofmError(f"cannot create the phantom dataset folder: {out} ({exc.strerror})") from None
    try:
        rows = _write_images(partial, n_per_class, size, seed, frames_per_group)
        for view in ("cls", "seg"):
            _write_labels(partial / view / "labels.csv", rows)
        manifest = {
            **params,
            "classes": list(PHANTOM_CLASSES),
            "mask_classes": list(PHANTOM_MASK_CLASSES),
            "n_images": len(rows),
        }
        (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            partial.rename(out)
        except OSError as exc:
            if not _is_complete(out, params):
                raise SonofmError(f"could not move the finished phantom set into place: {out} ({exc})") from None
            shutil.rmtree(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Path(out_dir)


def _is_complete(out: Path, params: dict[str, object]) -> bool:
    """True if `out` holds a phantom set written with `params`; False if it is missing or an empty folder."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise SonofmError(f"phantom dataset path exists and is not a folder: {out}")
    manifest_path = out / MANIFEST_NAME
    if not manifest_path.is_file():
        if any(out.iterdir()):
            raise SonofmError(f"folder exists and is not a phantom dataset (no {MANIFEST_NAME}): {out}")
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise SonofmError(f"unreadable phantom manifest: {manifest_path} ({exc})") from None
    found = {key: manifest.get(key) for key in params} if isinstance(manifest, dict) else {}
    if found != params:
        differing = ", ".join(
            f"{key}={found.get(key)!r}, asked {params[key]!r}" for key in params if found.get(key) != params[key]
        )
        raise SonofmError(f"folder holds a phantom dataset with other parameters ({differing}): {out}")
    return True


def _write_images(root: Path, n_per_class: int, size: int, seed: int, frames_per_group: int) -> list[dict[str, str]]:
    """Render and save every frame under `root`, one subject per job, in parallel over the CPUs this process may use;
    return the label rows in writing order (the files do not depend on the number of processes)."""
    for sub in ("seg/images", "seg/masks", *(f"cls/{kind}" for kind in PHANTOM_CLASSES)):
        (root / sub).mkdir(parents=True)
    n_groups = -(-n_per_class // frames_per_group)
    digits = max(3, len(str(n_groups - 1)))
    jobs = [
        _GroupJob(root, class_index, group_index, seed, size, digits,
                  min(frames_per_group, n_per_class - group_index * frames_per_group))
        for class_index in range(len(PHANTOM_CLASSES)) for group_index in range(n_groups)
    ]
    workers = min(len(os.sched_getaffinity(0)), len(jobs) // _MIN_JOBS_PER_WORKER)
    if workers < 2:
        return [row for job in jobs for row in _write_group(job)]
    context = multiprocessing.get_context("fork")  # only numpy, scipy and PIL run in the children
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return [row for rows in pool.map(_write_group, jobs) for row in rows]


@dataclass(frozen=True)
class _GroupJob:
    """The frames of one simulated subject (group) to render into ``root``."""

    root: Path
    class_index: int
    group_index: int
    seed: int
    size: int
    digits: int
    n_frames: int


def _write_group(job: _GroupJob) -> list[dict[str, str]]:
    """Render and save the frames of one subject; its label rows."""
    kind = PHANTOM_CLASSES[job.class_index]
    rng = np.random.default_rng([job.seed, job.class_index, job.group_index])
    subject = draw_subject(rng, kind)
    group = f"{kind}_g{job.group_index:0{job.digits}d}"
    rows = []
    for frame in range(job.n_frames):
        image, mask = render_subject(perturb_subject(subject, rng) if frame else subject, rng, job.size)
        name = f"{group}_f{frame}"
        Image.fromarray(image).save(job.root / "cls" / kind / f"{name}.png")
        Image.fromarray(image).save(job.root / "seg" / "images" / f"{name}.png")
        Image.fromarray(mask).save(job.root / "seg" / "masks" / f"{name}.png")
        rows.append({"name": name, "class": kind, "group": group})
    return rows


def _write_labels(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "class", "group"])
        writer.writeheader()
        writer.writerows(rows)
