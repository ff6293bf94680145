"""``sonofm predict``: class probabilities for image files with a finished classification run."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from sonofm.data.datasets import ImageFileDataset
from sonofm.data.image_io import IMAGE_EXTENSIONS
from sonofm.errors import SonofmError
from sonofm.runs.atomic import atomic_write_text
from sonofm.tasks.run_model import load_run_model


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
    """Write ``out_dir/predictions.csv``: ``path, prediction, confidence, prob_<class>...``; return its path."""
    loaded = load_run_model(run_path)
    paths = find_images(input_path)
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
