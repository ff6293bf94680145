"""What a deployed model expects as input: recorded beside every export so ``predict --onnx`` can reproduce it."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sonofm.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sonofm.runs.run_model import RunModel

NORMALISED_INPUT = "RGB scaled to [0, 1], resized bicubic (antialiased) to img_size x img_size, then (x - mean) / std"
ENHANCER_INPUT = "RGB scaled to [0, 1], resized bicubic to img_size x img_size (the model applies mean and std itself)"


class InferenceWrapper(nn.Module):
    """The run's eval-mode forward: images ``(B, 3, S, S)`` normalised -> logits ``(B, K)`` (cls), class scores
    ``(B, K, S, S)`` (seg, aux head unused) or the model's output tensor (other tasks)."""

    def __init__(self, model: nn.Module, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, images: Tensor) -> Tensor:
        if self.task == "seg":
            return self.model.predict(images)
        return self.model(images)


def preprocessing_of(loaded: RunModel) -> dict[str, Any]:
    """The JSON-able description of the input: size, normalisation, task and classes."""
    return {
        "task": loaded.task,
        "img_size": loaded.img_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "input": ENHANCER_INPUT if loaded.task == "enhance" else NORMALISED_INPUT,
        "classes": list(loaded.classes),
        "model": loaded.metadata.get("model"),
    }
