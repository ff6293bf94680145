"""Grad-CAM overlay figures for a few images of every class, from a trained classifier."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from sonofm.data.datasets import ClassificationDataset
from sonofm.data.records import Sample
from sonofm.report.figures import denormalize, plot_gradcam
from sonofm.report.gradcam import grad_cam


def first_per_class(samples: Sequence[Sample], num_classes: int, count: int) -> list[Sample]:
    """The first ``count`` samples of each class (class by class, in ``samples`` order within a class)."""
    return [sample for label in range(num_classes) for sample in [s for s in samples if s.label == label][:count]]


def write_gradcam_examples(model: nn.Module, samples: Sequence[Sample], classes: list[str], img_size: int,
                           out_dir: str | Path, prefix: str, batch_size: int = 8) -> list[Path]:
    """``out_dir/<prefix>_<class>_<image name>.png`` per sample: the image and its Grad-CAM for the predicted class,
    titled with the true and predicted class. ``model`` (an ``ImageClassifier``, eval mode) stays on its device."""
    device = next(model.parameters()).device
    loader = DataLoader(ClassificationDataset(samples, img_size, train=False), batch_size=batch_size)
    written = []
    position = 0
    for images, labels in loader:
        cams, logits = grad_cam(model, images.to(device))
        probs = logits.softmax(dim=1).cpu()
        for image, cam, label, prob in zip(images, cams.cpu(), labels.tolist(), probs, strict=True):
            sample = samples[position]
            position += 1
            predicted = int(prob.argmax())
            title = (f"{sample.name}: true {classes[label]}, predicted {classes[predicted]} "
                     f"(p = {prob[predicted]:.2f})")
            path = Path(out_dir) / f"{prefix}_{classes[label]}_{sample.name}.png"
            written.append(plot_gradcam(denormalize(image), cam.numpy(), path, title))
    return written
