"""The Python API: ``sonofm.load(path)`` and a loaded model's ``predict`` and ``embed``.

    import sonofm
    model = sonofm.load("runs/busi_cls")             # a run folder, an exported model folder or a model.safetensors
    model.predict(["a.png", "b.png"])                # classifier: [{"benign": 0.91, ...}, ...]
    model.embed(["a.png", "b.png"])                  # float32 (2, D): mean of the backbone's patch tokens

Images are paths, PIL images or uint8 numpy arrays (``(H, W)`` or ``(H, W, 3)``), preprocessed exactly as the CLI
does (``sonofm predict`` and ``sonofm embed`` give the same numbers at ``precision="32"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from sonofm.data.image_io import read_image
from sonofm.data.transforms import ClassificationTransform
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.errors import SonofmError
from sonofm.runs.model_source import load_model
from sonofm.runs.run_model import RunModel
from sonofm.tasks.enhance.module import unit_tensor

ImageLike = str | Path | Image.Image | np.ndarray


def load(path: str | Path) -> LoadedModel:
    """The model of a finished run folder, of a folder written by ``sonofm export --format folder``, or of a lone
    ``model.safetensors`` written by a sonofm run."""
    return LoadedModel(load_model(path))


@dataclass
class LoadedModel:
    """A classification, segmentation or enhancement model with its preprocessing."""

    loaded: RunModel

    @property
    def task(self) -> str:
        return self.loaded.task

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    def predict(self, images: ImageLike | Sequence[ImageLike], batch_size: int = 16, precision: str = "32"
                ) -> list[Any]:
        """Per image: a classifier's ``{class: probability}``; a segmenter's ``int64 (H, W)`` class ids at the image's
        own size; an enhancer's restored ``uint8 (H, W, 3)`` image at its own size."""
        pictures = _as_arrays(images)
        results: list[Any] = []
        for start in range(0, len(pictures), batch_size):
            batch = pictures[start:start + batch_size]
            if self.task == "enhance":
                outputs = self._forward(torch.stack([_unit_resized(picture, self.loaded.img_size)
                                                     for picture in batch]), precision)
                results += [_restored(output, picture.shape[:2]) for output, picture in zip(outputs, batch)]
            elif self.task == "seg":
                outputs = self._forward(self._normalised(batch), precision, call=self.model.predict)
                results += [_class_ids(scores, picture.shape[:2]) for scores, picture in zip(outputs, batch)]
            else:
                probs = self._forward(self._normalised(batch), precision).softmax(dim=1)
                results += [dict(zip(self.classes, row)) for row in probs.tolist()]
        return results

    def embed(self, images: ImageLike | Sequence[ImageLike], pool: str = "mean", batch_size: int = 16,
              precision: str = "32") -> np.ndarray:
        """``float32 (N, D)``: the backbone's first summary token (``cls``) or mean of its spatial tokens
        (``mean``), as ``sonofm embed --run``."""
        backbone = self.model.backbone
        prefix = backbone.num_prefix_tokens
        if pool not in ("mean", "cls") or (pool == "cls" and prefix == 0):
            raise SonofmError(f"pool must be 'mean' or 'cls' (a backbone with a summary token), got {pool!r}")
        pictures = _as_arrays(images)
        chunks = []
        for start in range(0, len(pictures), batch_size):
            tokens = self._forward(self._normalised(pictures[start:start + batch_size]), precision,
                                   call=backbone.forward_tokens)
            chunks.append(tokens[:, 0] if pool == "cls" else tokens[:, prefix:].mean(dim=1))
        return torch.cat(chunks).numpy().astype(np.float32)

    def _normalised(self, pictures: list[np.ndarray]) -> Tensor:
        transform = ClassificationTransform(self.loaded.img_size, train=False)
        return torch.stack([transform(picture) for picture in pictures])

    def _forward(self, images: Tensor, precision: str, call: Any = None) -> Tensor:
        device = inference_device()
        model = self.model.to(device).eval()
        with torch.inference_mode(), autocast_for(device, precision):
            return (call or model)(images.to(device)).float().cpu()


def _as_arrays(images: ImageLike | Sequence[ImageLike]) -> list[np.ndarray]:
    """``uint8 (H, W, 3)`` arrays from one image or a sequence of paths, PIL images and arrays."""
    if isinstance(images, str | Path | Image.Image | np.ndarray):
        images = [images]
    if not isinstance(images, Iterable):
        raise SonofmError(f"images must be paths, PIL images or numpy arrays, got {type(images).__name__}")
    return [_as_array(image) for image in images]


def _as_array(image: ImageLike) -> np.ndarray:
    if isinstance(image, str | Path):
        return read_image(image)
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        return np.ascontiguousarray(np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
                                    if image.ndim == 2 or image.shape[2] == 1 else image)
    raise SonofmError("an image must be a path, a PIL image or a uint8 numpy array of shape (H, W) or (H, W, 3), "
                      f"got {type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}")


def _unit_resized(picture: np.ndarray, img_size: int) -> Tensor:
    """What the enhancer sees: bicubic-resized to ``img_size``, in [0, 1] (as ``sonofm predict``)."""
    return unit_tensor(np.asarray(Image.fromarray(picture).resize((img_size, img_size), Image.BICUBIC)))


def _class_ids(scores: Tensor, size: tuple[int, int]) -> np.ndarray:
    """Class scores ``(K, S, S)`` -> ``int64 (H, W)`` ids, resized bilinearly before the argmax."""
    return F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0].argmax(dim=0).numpy()


def _restored(output: Tensor, size: tuple[int, int]) -> np.ndarray:
    """A restored ``(3, S, S)`` image in [0, 1] -> ``uint8 (H, W, 3)`` at ``size``, bicubic."""
    full = F.interpolate(output[None], size=size, mode="bicubic", align_corners=False)[0]
    return (full.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
