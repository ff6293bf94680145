"""Prompts drawn from ground-truth masks: one per (image, class present); clicks or boxes, random or fixed.

Coordinates are SAM's: ``(x, y)`` pixel indices in the model's input frame (the prompt encoder adds the half-pixel
offset itself). Training draws random positive clicks inside the class and boxes jittered by up to ``box_jitter`` of
their side per edge; evaluation uses fixed prompts: the most interior pixel of the class (largest distance to its
border) and the tight box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import ndimage
from segment_anything.modeling import PromptEncoder
from torch import Tensor

from sonofm.errors import SonofmError

PROMPT_KINDS = ("point", "box")


@dataclass
class Prompts:
    """``P`` prompts on a batch of images: clicks, boxes or both (drawn from masks: exactly one of them)."""

    image_index: Tensor  # (P,) int64: the image each prompt belongs to
    class_id: Tensor  # (P,) int64: the class it asks for
    points: Tensor | None = None  # (P, N, 2) float (x, y)
    boxes: Tensor | None = None  # (P, 4) float (x0, y0, x1, y1)
    point_labels: Tensor | None = None  # (P, N) int64: 1 a positive click, 0 a negative one; all positive if None

    def __len__(self) -> int:
        return len(self.image_index)

    def embed(self, prompt_encoder: PromptEncoder) -> tuple[Tensor, Tensor]:
        """SAM's sparse ``(P, T, C)`` and dense ``(P, C, h, w)`` prompt embeddings."""
        points = None
        if self.points is not None:
            labels = self.point_labels
            if labels is None:
                labels = torch.ones(self.points.shape[:2], dtype=torch.int64, device=self.points.device)
            points = (self.points, labels)
        return prompt_encoder(points=points, boxes=self.boxes, masks=None)

    def to(self, device: torch.device) -> Prompts:
        """The same prompts on ``device``."""
        return Prompts(*(None if value is None else value.to(device) for value in (
            self.image_index, self.class_id, self.points, self.boxes, self.point_labels)))

    def targets(self, masks: Tensor) -> Tensor:
        """Binary targets (P, H, W) float: the pixels of each prompt's class in its image's mask (B, H, W)."""
        return (masks[self.image_index] == self.class_id[:, None, None]).float()


def check_prompt_kinds(kinds: list[str]) -> None:
    unknown = [kind for kind in kinds if kind not in PROMPT_KINDS]
    if unknown or not kinds:
        raise SonofmError(f"prompt kinds must be a non-empty list of {', '.join(PROMPT_KINDS)}, got {kinds}")


def prompts_from_masks(masks: Tensor, num_classes: int, kind: str, generator: torch.Generator | None = None,
                       num_clicks: int = 1, box_jitter: float = 0.1) -> Prompts:
    """One ``kind`` prompt per (image, foreground class present) of ``masks`` (B, H, W) int64 class ids.

    With a ``generator``: random clicks / jittered boxes (training); without: fixed ones (evaluation).
    Prompts come back on ``masks``' device.
    """
    cpu_masks = masks.cpu()
    present = torch.stack([(cpu_masks == c).flatten(1).any(dim=1) for c in range(1, num_classes)], dim=1)
    image_index, class_offset = present.nonzero(as_tuple=True)
    prompts = Prompts(image_index, class_offset + 1)
    regions = prompts.targets(cpu_masks).bool()
    if kind == "point":
        prompts.points = (random_clicks(regions, num_clicks, generator) if generator is not None
                          else interior_clicks(regions))
    elif kind == "box":
        boxes = tight_boxes(regions)
        prompts.boxes = jitter_boxes(boxes, regions.shape[-1], regions.shape[-2], box_jitter, generator) \
            if generator is not None else boxes
    else:
        check_prompt_kinds([kind])
    return prompts.to(masks.device)


def random_clicks(regions: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` clicks per region drawn uniformly from its pixels: (P, H, W) bool -> (P, count, 2) float."""
    if not len(regions):
        return torch.zeros(0, count, 2)
    width = regions.shape[-1]
    flat = torch.multinomial(regions.flatten(1).float(), count, replacement=True, generator=generator)
    return torch.stack([flat % width, flat // width], dim=-1).float()


def interior_clicks(regions: Tensor) -> Tensor:
    """The pixel of each region farthest from its border (first in row-major order on ties): (P, 1, 2) float."""
    clicks = torch.zeros(len(regions), 1, 2)
    width = regions.shape[-1]
    for position, region in enumerate(regions.numpy()):
        distance = ndimage.distance_transform_edt(region)
        flat = int(distance.argmax())
        clicks[position, 0] = torch.tensor([flat % width, flat // width], dtype=torch.float32)
    return clicks


def tight_boxes(regions: Tensor) -> Tensor:
    """Bounding boxes ``(x0, y0, x1, y1)`` (inclusive pixel indices) of non-empty regions (P, H, W): (P, 4) float."""
    rows, cols = regions.any(dim=2), regions.any(dim=1)
    height, width = regions.shape[-2:]
    y0 = rows.int().argmax(dim=1)
    y1 = height - 1 - rows.flip(1).int().argmax(dim=1)
    x0 = cols.int().argmax(dim=1)
    x1 = width - 1 - cols.flip(1).int().argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).float()


def jitter_boxes(boxes: Tensor, width: int, height: int, jitter: float, generator: torch.Generator) -> Tensor:
    """Move each edge by up to ``jitter`` of the box side (uniform), clipped to the image: (P, 4) -> (P, 4)."""
    sides = (boxes[:, 2:] - boxes[:, :2] + 1).repeat(1, 2)  # (w, h, w, h)
    noise = (torch.rand(boxes.shape, generator=generator) * 2 - 1) * jitter * sides
    moved = boxes + noise
    limit = torch.tensor([width - 1, height - 1, width - 1, height - 1], dtype=boxes.dtype)
    moved = torch.minimum(moved.clamp(min=0), limit)
    low = torch.minimum(moved[:, :2], moved[:, 2:])
    high = torch.maximum(moved[:, :2], moved[:, 2:])
    return torch.cat([low, high], dim=1)
