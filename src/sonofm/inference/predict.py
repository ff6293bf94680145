"""``sonofm predict``: class probabilities (classification), masks (segmentation) or restored images (enhancement)
for image files, from a run, an exported model folder or model file, or an ONNX export.

The writers take a ``forward`` callable (normalised images ``(B, 3, S, S)`` -> logits ``(B, K)`` or class scores
``(B, K, S, S)``), so the PyTorch run and an exported ONNX file share them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader

from sonofm.atomic import atomic_write_png, atomic_write_text
from sonofm.data.datasets import ImageFileDataset
from sonofm.data.image_io import image_size, read_image
from sonofm.data.inputs import find_input_images
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.errors import SonofmError
from sonofm.progress import progress_bar
from sonofm.report.overlay import overlay_mask
from sonofm.runs.model_source import load_model
from sonofm.runs.run_model import RunModel, load_run_model

Forward = Callable[[Tensor], Tensor]


def predict_run(run_path: str | Path, input_path: str | Path, out_dir: str | Path, batch_size: int = 32,
                progress: bool = True, precision: str = "auto") -> Path:
    """Predict every image of ``input_path`` with the run's model; return the path of ``out_dir/predictions.csv``.

    The model runs on the GPU when there is one, under bf16 autocast where ``precision`` resolves to it.
    """
    return predict_loaded(load_run_model(run_path), input_path, out_dir, batch_size, progress, precision)


def predict_model(model_path: str | Path, input_path: str | Path, out_dir: str | Path, batch_size: int = 32,
                  progress: bool = True, precision: str = "auto") -> Path:
    """As :func:`predict_run`, with a model folder written by ``sonofm export --format folder`` or a lone
    ``model.safetensors`` (a run folder works too)."""
    return predict_loaded(load_model(model_path), input_path, out_dir, batch_size, progress, precision)


def predict_loaded(loaded: RunModel, input_path: str | Path, out_dir: str | Path, batch_size: int, progress: bool,
                   precision: str) -> Path:
    """Predict every image of ``input_path`` with a loaded model, on the GPU when there is one."""
    device = inference_device()
    model = loaded.model.to(device)
    call = model.predict if loaded.task == "seg" else model

    def forward(images: Tensor) -> Tensor:
        with autocast_for(device, precision):
            return call(images.to(device)).float().cpu()

    return predict_with(forward, loaded.task, loaded.img_size, loaded.classes, input_path, out_dir, batch_size,
                        progress)


def predict_onnx(onnx_path: str | Path, input_path: str | Path, out_dir: str | Path, batch_size: int = 32,
                 progress: bool = True, precision: str = "32") -> Path:
    """As :func:`predict_run`, with an exported ONNX file run by onnxruntime on the CPU in float32 (``precision``
    is accepted for a common signature and ignored); the preprocessing comes from the file's metadata."""
    from sonofm.export.onnx_runtime import OnnxModel

    model = OnnxModel(onnx_path)
    info = model.preprocessing
    return predict_with(model, info["task"], int(info["img_size"]), list(info["classes"]), input_path, out_dir,
                        batch_size, progress)


def predict_with(forward: Forward, task: str, img_size: int, classes: list[str], input_path: str | Path,
                 out_dir: str | Path, batch_size: int, progress: bool) -> Path:
    """Dispatch to the writer of ``task`` (``cls``, ``seg`` or ``enhance``)."""
    paths = find_input_images(Path(input_path))
    if task == "seg":
        return predict_masks(forward, classes, img_size, paths, Path(input_path), Path(out_dir), batch_size, progress)
    if task == "enhance":
        from sonofm.tasks.enhance.restore_files import predict_restored

        return predict_restored(forward, paths, Path(out_dir), img_size, batch_size, progress)
    if task != "cls":
        raise SonofmError(f"predict supports classification, segmentation and enhancement models, not {task!r}")
    return predict_classes(forward, classes, img_size, paths, Path(out_dir), batch_size, progress)


def predict_classes(forward: Forward, classes: list[str], img_size: int, paths: list[Path], out_dir: Path,
                    batch_size: int = 32, progress: bool = True) -> Path:
    """One CSV row per image (``path, prediction, confidence, prob_<class>...``) in ``out_dir/predictions.csv``."""
    loader = DataLoader(ImageFileDataset(paths, img_size), batch_size=batch_size)
    rows = []
    with torch.inference_mode():
        for images, indices in progress_bar(loader, desc="predict", unit="batch", disable=not progress):
            probs = forward(images).float().softmax(dim=1)
            for index, row in zip(indices.tolist(), probs.tolist()):
                best = max(range(len(row)), key=row.__getitem__)
                rows.append([str(paths[index]), classes[best], f"{row[best]:.6f}", *(f"{p:.6f}" for p in row)])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "prediction", "confidence", *(f"prob_{name}" for name in classes)])
    writer.writerows(rows)
    return atomic_write_text(out_dir / "predictions.csv", buffer.getvalue())


def predict_masks(forward: Forward, classes: list[str], img_size: int, paths: list[Path], input_path: Path,
                  out_dir: Path, batch_size: int = 8, progress: bool = True) -> Path:
    """Write ``masks/NAME.png`` (class ids, the image's own size), ``overlays/NAME.png`` and ``predictions.csv``.

    Class scores ``(B, K, S, S)`` are resized bilinearly to each image's size before the argmax. NAME keeps the
    image's path relative to ``input_path`` (a folder), so files in subfolders cannot collide. The CSV lists each
    image with its mask, overlay and the fraction of pixels of every class.
    """
    num_classes = len(classes)
    loader = DataLoader(ImageFileDataset(paths, img_size), batch_size=batch_size)
    rows = []
    with torch.inference_mode():
        for images, positions in progress_bar(loader, desc="predict", unit="batch", disable=not progress):
            for score, position in zip(forward(images).float(), positions.tolist()):
                path = paths[position]
                width, height = image_size(path)
                resized = F.interpolate(score[None], size=(height, width), mode="bilinear", align_corners=False)
                prediction = resized[0].argmax(dim=0)
                name = path.relative_to(input_path) if input_path.is_dir() else Path(path.name)
                ids = prediction.numpy().astype(np.uint8 if num_classes <= 256 else np.uint16)
                mask_path = atomic_write_png(out_dir / "masks" / name.with_suffix(".png"), ids)
                overlay = overlay_mask(read_image(path), prediction.numpy(), num_classes)
                overlay_path = atomic_write_png(out_dir / "overlays" / name.with_suffix(".png"), overlay)
                fractions = torch.bincount(prediction.flatten(), minlength=num_classes).double() / prediction.numel()
                rows.append([str(path), str(mask_path), str(overlay_path), *(f"{f:.6f}" for f in fractions.tolist())])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "mask", "overlay", *(f"fraction_{name}" for name in classes)])
    writer.writerows(rows)
    return atomic_write_text(out_dir / "predictions.csv", buffer.getvalue())
