"""Figures written into run folders (matplotlib, Agg backend, atomic PNG writes)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sonofm.atomic import atomic_write  # noqa: E402
from sonofm.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from sonofm.report.overlay import overlay_mask  # noqa: E402


def save_figure(figure: plt.Figure, path: str | Path) -> Path:
    """Save ``figure`` as PNG atomically and close it."""
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(figure)


def plot_confusion_matrix(matrix: torch.Tensor, class_names: list[str], path: str | Path, title: str) -> Path:
    """(C, C) counts (rows true, columns predicted) as an annotated heat map with row-normalised colours."""
    counts = matrix.cpu().float()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    size = 1.2 + 0.8 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(len(class_names)):
        for col in range(len(class_names)):
            colour = "white" if rates[row, col] > 0.5 else "black"
            axes.text(col, row, f"{int(counts[row, col])}", ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of true class")
    return save_figure(figure, path)


def plot_training_curves(log_rows: list[dict[str, str]], path: str | Path, metric_keys: tuple[str, ...]) -> Path:
    """Loss curves (left) and the ``metric_keys`` columns (right, in [0, 1]) from ``log.csv`` rows."""
    epochs = [int(row["epoch"]) for row in log_rows]
    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("train/loss_epoch", "val/loss"):
        values = [float(row[key]) if row.get(key) else float("nan") for row in log_rows]
        loss_axes.plot(epochs, values, marker="o", label=key)
    for key in metric_keys:
        values = [float(row[key]) if row.get(key) else float("nan") for row in log_rows]
        metric_axes.plot(epochs, values, marker="o", label=key)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_title("loss")
    loss_axes.legend()
    metric_axes.set_xlabel("epoch")
    metric_axes.set_ylim(0, 1)
    metric_axes.set_title("metrics")
    metric_axes.legend()
    return save_figure(figure, path)


def plot_segmentation_examples(examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], class_names: list[str],
                               path: str | Path, title: str) -> Path:
    """A grid with one row per example ``(name, uint8 (H, W, 3) image, true ids (H, W), predicted ids (H, W))``:
    image, ground-truth overlay, prediction overlay."""
    rows = max(1, len(examples))
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    for row, (name, image, truth, prediction) in enumerate(examples):
        panels = (image, overlay_mask(image, truth, len(class_names)), overlay_mask(image, prediction, len(class_names)))
        for column, (panel, label) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
            axes[row, column].imshow(panel)
            axes[row, column].set_title(f"{name}: {label}" if column == 0 else label, fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def pasted_reconstruction(originals: torch.Tensor, reconstructions: torch.Tensor, pixel_mask: torch.Tensor
                          ) -> torch.Tensor:
    """The reconstruction in the hidden pixels over the original elsewhere (what the loss judges, as MAE and SimMIM
    draw it): ``(K, 3, S, S)`` from two such tensors and a ``(K, 1, S, S)`` mask of hidden pixels."""
    return originals * (1 - pixel_mask) + reconstructions * pixel_mask


def plot_reconstructions(originals: torch.Tensor, corrupted: torch.Tensor, pixel_mask: torch.Tensor,
                         reconstructions: torch.Tensor, path: str | Path, title: str) -> Path:
    """Rows of original / encoder input / reconstruction pasted into the hidden blocks / raw network output, for
    ImageNet-normalised ``(K, 3, S, S)`` tensors and a ``(K, 1, S, S)`` mask of hidden pixels. The raw output's
    visible part is unconstrained by the loss. A grayscale original's row is drawn in grayscale."""
    panels = {"original": originals, "encoder input": corrupted,
              "reconstruction in hidden blocks": pasted_reconstruction(originals, reconstructions, pixel_mask),
              "raw output": reconstructions}
    rows = len(originals)
    figure, axes = plt.subplots(rows, len(panels), figsize=(2.5 * len(panels), 2.5 * rows), squeeze=False)
    for row in range(rows):
        original = denormalize(originals[row])
        gray = bool(np.all(original == original[:, :, :1]))
        for column, (label, tensor) in enumerate(panels.items()):
            image = denormalize(tensor[row])
            if gray:
                axes[row, column].imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=255)
            else:
                axes[row, column].imshow(image)
            if row == 0:
                axes[row, column].set_title(label, fontsize=9)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_gradcam(image: np.ndarray, cam: np.ndarray, path: str | Path, title: str) -> Path:
    """Two panels: the ``uint8 (H, W, 3)`` image, and the same image under the ``(H, W)`` [0, 1] Grad-CAM heat map."""
    figure, (image_axes, overlay_axes) = plt.subplots(1, 2, figsize=(6, 3.3))
    image_axes.imshow(image)
    image_axes.set_title("image", fontsize=8)
    overlay_axes.imshow(image)
    heat = overlay_axes.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    overlay_axes.set_title("Grad-CAM", fontsize=8)
    for axis in (image_axes, overlay_axes):
        axis.axis("off")
    figure.colorbar(heat, ax=overlay_axes, fraction=0.046)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def denormalize(image: torch.Tensor) -> np.ndarray:
    """ImageNet-normalised ``(3, H, W)`` -> ``uint8 (H, W, 3)`` for display."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = (image.float() * std + mean).clamp(0, 1) * 255
    return pixels.round().byte().permute(1, 2, 0).numpy()


def plot_label_efficiency(summary: list[dict], metric: str, path: str | Path, title: str) -> Path:
    """``metric`` mean ± std against the label fraction, one line per initialisation (rows from ``summarise``)."""
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for init in dict.fromkeys(row["init"] for row in summary):
        rows = sorted((row for row in summary if row["init"] == init), key=lambda row: row["fraction"])
        axes.errorbar([row["fraction"] for row in rows], [row[f"{metric}_mean"] for row in rows],
                      yerr=[row[f"{metric}_std"] for row in rows], marker="o", capsize=3, label=init)
    axes.set_xscale("log")
    axes.set_xlabel("fraction of training labels")
    axes.set_ylabel(metric)
    axes.set_title(title, fontsize=9)
    axes.legend()
    return save_figure(figure, path)
