"""Image and paired image + mask transforms, from decoded arrays to normalised tensors.

Training augmentation is mild and ultrasound-sane: a random resized crop (scale 0.7-1), a horizontal flip and a
small brightness/contrast jitter. There is no vertical flip or rotation by 90 degrees: depth has a direction.
Evaluation resizes to ``S x S``. Images are resized bicubic (antialiased), masks nearest (pixel-centre aligned).
Random draws come from an explicit ``torch.Generator`` (one per item, see ``sampling.SeededEpochSampler``) so a
resumed run augments exactly as an uninterrupted one; without one they use torch's global generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CROP_SCALE = (0.7, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.1  # brightness and contrast factors drawn from [1 - JITTER, 1 + JITTER]
AUGMENTATIONS = ("sonofm", "uscl")
USCL_CROP_SCALE, USCL_CROP_RATIO = (0.8, 1.0), (0.8, 1.25)

_Box = tuple[int, int, int, int]  # top, left, height, width


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 (H, W, 3)`` array -> ``uint8 (3, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def normalize(image: torch.Tensor) -> torch.Tensor:
    """``uint8 (3, H, W)`` -> ``float32 (3, H, W)`` in [0, 1], then ImageNet-normalised."""
    scaled = image.float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return scaled.sub_(mean).div_(std)


def random_crop_box(height: int, width: int, generator: torch.Generator | None = None,
                    scale: tuple[float, float] = CROP_SCALE, ratio: tuple[float, float] = CROP_RATIO) -> _Box:
    """A box covering a random ``scale`` share of the area (default 70-100 %) with aspect ratio in ``ratio``
    (default [3/4, 4/3]); the whole image if none fits in 10 draws."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(*scale, generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(*log_ratio, generator=generator).item())
        crop_w = round(math.sqrt(target * aspect))
        crop_h = round(math.sqrt(target / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator).item())
            return top, left, crop_h, crop_w
    return 0, 0, height, width


def jitter(image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness then contrast factor in [0.9, 1.1] on a ``uint8 (3, H, W)`` image."""
    brightness, contrast = (torch.empty(2).uniform_(1 - JITTER, 1 + JITTER, generator=generator)).tolist()
    image = F.adjust_brightness(image, brightness)
    return F.adjust_contrast(image, contrast)


def _resize_image(image: torch.Tensor, size: int, box: _Box | None = None) -> torch.Tensor:
    box = box or (0, 0, image.shape[-2], image.shape[-1])
    return F.resized_crop(image, *box, size=[size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)


def _resize_mask(mask: torch.Tensor, size: int, box: _Box | None = None) -> torch.Tensor:
    box = box or (0, 0, mask.shape[-2], mask.shape[-1])
    # nearest interpolation is not implemented for int64; float32 holds ids exactly up to 2**24
    nearest = InterpolationMode.NEAREST_EXACT
    resized = F.resized_crop(mask[None].float(), *box, size=[size, size], interpolation=nearest)
    return resized[0].long()


class ClassificationTransform:
    """``uint8 (H, W, 3)`` image -> ``float32 (3, S, S)`` normalised tensor, augmented when ``train``.

    ``augment``: ``sonofm`` (random resized crop of 70-100 % of the area, flip, brightness/contrast jitter) or
    ``uscl`` (USCL's fine-tuning recipe: resize to S x S, then a random resized crop of 80-100 % with aspect ratio in
    [0.8, 1.25], and flip). Both resize to S x S without augmentation when not ``train``.
    """

    def __init__(self, img_size: int, train: bool, augment: str = "sonofm") -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        self.img_size = img_size
        self.train = train
        self.augment = augment

    def __call__(self, image: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        tensor = image_to_tensor(image)
        if not self.train:
            return normalize(_resize_image(tensor, self.img_size))
        if self.augment == "uscl":
            tensor = _resize_image(tensor, self.img_size)
            box = random_crop_box(self.img_size, self.img_size, generator, USCL_CROP_SCALE, USCL_CROP_RATIO)
            tensor = _resize_image(tensor, self.img_size, box)
            return normalize(F.horizontal_flip(tensor) if torch.rand(1, generator=generator).item() < 0.5 else tensor)
        tensor = _resize_image(tensor, self.img_size, random_crop_box(*tensor.shape[-2:], generator))
        if torch.rand(1, generator=generator).item() < 0.5:
            tensor = F.horizontal_flip(tensor)
        return normalize(jitter(tensor, generator))


class SegmentationTransform:
    """Image ``uint8 (H, W, 3)`` + mask ``int64 (H, W)`` -> ``float32 (3, S, S)`` and ``int64 (S, S)``.

    Crop and flip are shared by image and mask; the jitter touches the image only.
    """

    def __init__(self, img_size: int, train: bool) -> None:
        self.img_size = img_size
        self.train = train

    def __call__(self, image: np.ndarray, mask: np.ndarray,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tensor, ids = image_to_tensor(image), torch.from_numpy(np.ascontiguousarray(mask))
        if not self.train:
            return normalize(_resize_image(tensor, self.img_size)), _resize_mask(ids, self.img_size)
        box = random_crop_box(*tensor.shape[-2:], generator)
        tensor, ids = _resize_image(tensor, self.img_size, box), _resize_mask(ids, self.img_size, box)
        if torch.rand(1, generator=generator).item() < 0.5:
            tensor, ids = F.horizontal_flip(tensor), F.horizontal_flip(ids)
        return normalize(jitter(tensor, generator)), ids
