"""The ACLUS training sample: two views with their anatomy maps and the clean core (the views' overlap)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from sonofm.data.anatomy_maps import AnatomyPairs
from sonofm.data.sampling import ItemKey, item_generator
from sonofm.methods.aclus.views import ViewParams, overlap, photometric, render_view, sample_view

OVERLAP_TRIES = 10
Sample = dict[str, Tensor]


class AclusDataset(Dataset):
    """Per image: ``views`` (2, 3, S, S) and ``core`` (3, C, C) in [0, 1] (not normalised: the core is corrupted
    in pixel space later), ``view_masks`` (2, S, S) and ``core_mask`` (C, C) int64 ids, ``core_valid`` (bool);
    C = ``core_size`` (default S).

    View 1 is blurred always and never solarised, view 2 blurred with p 0.1 and solarised with p 0.2 (BYOL's
    asymmetric recipe). View 2 is redrawn up to 10 times until it overlaps view 1; if it never does, the core is
    view 1's box and ``core_valid`` is False (no context loss for that image).
    """

    def __init__(self, pairs: AnatomyPairs, img_size: int = 224, crop_scale: tuple[float, float] = (0.08, 1.0),
                 core_size: int | None = None) -> None:
        self.pairs = pairs
        self.img_size = img_size
        self.core_size = core_size or img_size
        self.crop_scale = crop_scale

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: ItemKey) -> Sample:
        position, generator = item_generator(key)
        generator = generator or torch.Generator().manual_seed(position)
        pixels, ids = self.pairs.read(position)
        image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
        mask = torch.from_numpy(ids)
        height, width = mask.shape
        first = sample_view(height, width, generator, self.crop_scale)
        second, core_box = first, None
        for _ in range(OVERLAP_TRIES):
            second = sample_view(height, width, generator, self.crop_scale)
            core_box = overlap(first, second)
            if core_box is not None:
                break
        size = self.img_size
        view_a, mask_a = render_view(image, mask, first, size)
        view_b, mask_b = render_view(image, mask, second, size)
        core, core_mask = render_view(image, mask, ViewParams(core_box or first.box, flip=False), self.core_size)
        return {
            "views": torch.stack([photometric(view_a, generator, blur_p=1.0, solarize_p=0.0),
                                  photometric(view_b, generator, blur_p=0.1, solarize_p=0.2)]),
            "view_masks": torch.stack([mask_a, mask_b]),
            "core": photometric(core, generator, blur_p=1.0, solarize_p=0.0),
            "core_mask": core_mask,
            "core_valid": torch.tensor(core_box is not None),
        }
