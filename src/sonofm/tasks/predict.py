"""``sonofm predict``: class probabilities (classification runs) or masks (segmentation runs) for image files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from sonofm.data.datasets import ImageFileDataset
from sonofm.data.image_io import IMAGE_EXTENSIONS, read_image
from sonofm.errors import SonofmError
from sonofm.runs.atomic import atomic_write_png, atomic_write_text
from sonofm.tasks.overlay import overlay_mask
from sonofm.tasks.run_model import RunModel, load_run_model
from sonofm.tasks.seg_inference import segment_images


def find_images(path: str | Path) -> list[Path]:
    """A single image file, or every image under a folder (recursive, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SonofmError(f"--input {path} does not exist")
    images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise SonofmError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {path}")
    return images


def predict_run(run_path: str | Path, input_path: str | Path, out_dir: str | Path, batch_size: int = 32,
                progress: bool = True) -> Path:
    """Predict every image of ``input_path`` with the run's model; return the path of ``out_dir/predictions.csv``.

    Classification: one CSV row per image (``path, prediction, confidence, prob_<class>...``). Segmentation: see
    :func:`predict_masks`.
    """
    loaded = load_run_model(run_path)
    paths = find_images(input_path)
    if loaded.task == "seg":
        return predict_masks(loaded, paths, Path(input_path), Path(out_dir), batch_size, progress)
    loader = DataLoader(ImageFileDataset(paths, loaded.img_size), batch_size=batch_size)
    rows = []
    with torch.inference_mode():
        for images, indices in tqdm(loader, desc="predict", unit="batch", disable=not progress):
            probs = loaded.model(images).float().softmax(dim=1)
            for index, row in zip(indices.tolist(), probs.tolist()):
                best = max(range(len(row)), key=row.__getitem__)
                rows.append([str(paths[index]), loaded.classes[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "prediction", "confidence", *(f"prob_{name}" for name in loaded.classes)])
    writer.writerows(rows)
    return atomic_write_text(Path(out_dir) / "predictions.csv", buffer.getvalue())


def predict_masks(loaded: RunModel, paths: list[Path], input_path: Path, out_dir: Path, batch_size: int = 8,
                  progress: bool = True) -> Path:
    """Write ``masks/NAME.png`` (class ids, the image's own size), ``overlays/NAME.png`` and ``predictions.csv``.

    NAME keeps the image's path relative to ``input_path`` (a folder), so files in subfolders cannot collide. The CSV
    lists each image with its mask, overlay and the fraction of pixels of every class.
    """
    num_classes = len(loaded.classes)
    rows = []
    for position, prediction in segment_images(loaded.model, paths, loaded.img_size, batch_size=batch_size,
                                               progress=progress, desc="predict"):
        path = paths[position]
        name = path.relative_to(input_path) if input_path.is_dir() else Path(path.name)
        ids = prediction.numpy().astype(np.uint8 if num_classes <= 256 else np.uint16)
        mask_path = atomic_write_png(out_dir / "masks" / name.with_suffix(".png"), ids)
        overlay = overlay_mask(read_image(path), prediction.numpy(), num_classes)
        overlay_path = atomic_write_png(out_dir / "overlays" / name.with_suffix(".png"), overlay)
        fractions = torch.bincount(prediction.flatten(), minlength=num_classes).double() / prediction.numel()
        rows.append([str(path), str(mask_path), str(overlay_path), *(f"{f:.6f}" for f in fractions.tolist())])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "mask", "overlay", *(f"fraction_{name}" for name in loaded.classes)])
    writer.writerows(rows)
    return atomic_write_text(out_dir / "predictions.csv", buffer.getvalue())

