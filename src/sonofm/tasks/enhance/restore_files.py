"""Restore image files with an enhancement model (a run's PyTorch model or an exported ONNX file).

``forward`` maps images ``(B, 3, S, S)`` float in [0, 1] (no ImageNet normalisation: the enhancer does its own) to
restored images ``(B, 3, S, S)`` in about [0, 1]. The input is the image as given (in real use already degraded).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from sonofm.atomic import atomic_write_png, atomic_write_text
from sonofm.data.image_io import read_image
from sonofm.progress import progress_bar
from sonofm.tasks.enhance.module import load_resized, unit_tensor


class _UnitImages(Dataset):
    """``(image float32 (3, S, S) in [0, 1], position)`` per file, bicubic-resized to ``img_size``."""

    def __init__(self, paths: Sequence[Path], img_size: int) -> None:
        self.paths = list(paths)
        self.img_size = img_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> tuple[Tensor, int]:
        return unit_tensor(load_resized(self.paths[position], self.img_size)), position


def output_names(paths: Sequence[Path]) -> list[str]:
    """Each image's path relative to the images' common folder, as ``.png`` (files in subfolders cannot collide)."""
    resolved = [Path(path).resolve() for path in paths]
    root = Path(os.path.commonpath([path.parent for path in resolved]))
    return [path.relative_to(root).with_suffix(".png").as_posix() for path in resolved]


def predict_restored(forward: Callable[[Tensor], Tensor], paths: Sequence[str | Path], out_dir: str | Path,
                     img_size: int, batch_size: int = 8, progress: bool = True) -> Path:
    """Write ``out_dir/restored/NAME.png`` (RGB, each input image's own size: the restored ``S x S`` image is
    resized bicubically back) and ``out_dir/predictions.csv`` (``path, restored, width, height``); return the CSV."""
    paths = [Path(path) for path in paths]
    out_dir = Path(out_dir)
    names = output_names(paths)
    loader = DataLoader(_UnitImages(paths, img_size), batch_size=batch_size)
    rows = []
    with torch.inference_mode():
        for images, positions in progress_bar(loader, desc="restore", unit="batch", disable=not progress):
            restored = forward(images).float().cpu()
            for image, position in zip(restored, positions.tolist()):
                height, width = read_image(paths[position]).shape[:2]
                full = F.interpolate(image[None], size=(height, width), mode="bicubic", align_corners=False)[0]
                pixels = (full.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
                target = out_dir / "restored" / names[position]
                atomic_write_png(target, np.ascontiguousarray(pixels))
                rows.append([str(paths[position]), str(target), width, height])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "restored", "width", "height"])
    writer.writerows(rows)
    return atomic_write_text(out_dir / "predictions.csv", buffer.getvalue())
