"""Loading official SAM checkpoints (``sam_vit_b/l/h_*.pth``) at any input size, with every key accounted for."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from segment_anything.modeling import Sam
from torch import Tensor
from torch.nn import functional as F

from sonofm.atomic import atomic_write
from sonofm.errors import SonofmError
from sonofm.models.state_dict_file import read_weights_file
from sonofm.models.weights import LoadReport
from sonofm.sam.registry import NATIVE_IMG_SIZE, SAM_TYPES, build_sam
from sonofm.sam.samus import samus_part

POS_EMBED_KEY = "image_encoder.pos_embed"
REL_POS_KEY = re.compile(r"image_encoder\.blocks\.\d+\.attn\.rel_pos_[hw]$")
PATCH_WEIGHT_KEY = "image_encoder.patch_embed.proj.weight"
BLOCK_KEY = re.compile(r"image_encoder\.blocks\.(\d+)\.")


def load_sam(path: str | Path, sam_type: str = "vit_b", img_size: int = NATIVE_IMG_SIZE, samus: bool = False) -> Sam:
    """A ``segment_anything`` ``Sam`` of ``sam_type`` for ``img_size`` inputs, with the weights of checkpoint ``path``.

    At ``img_size`` != 1024 the absolute position embedding (``(1, 64, 64, C)``) is resized bicubically to the new
    patch grid and the relative position tables of the global-attention blocks (``(127, C/heads)``) linearly to
    ``2 * grid - 1`` rows; windowed blocks keep theirs. A missing or unexpected key, or any other shape mismatch, is
    an error naming the key (a file of another SAM size names the size it holds). The model's ``load_report``
    attribute lists what was loaded and resized.

    ``samus``: SAMUS's encoder (:mod:`sonofm.sam.samus`). Every checkpoint tensor loads (the position embedding at
    its own 64x64 grid; the global blocks' tables resized to the ``img_size / 8`` grid); the report's ``new`` lists
    the SAMUS tensors, which keep their random initialisation.
    """
    weights = read_weights_file(path)
    state = weights.tensors
    held = _detect_sam_type(state)
    if held is not None and held != sam_type:
        raise SonofmError(f"{path} holds a SAM {held} but sam_type is {sam_type}; pass --sam-type {held}")
    model = build_sam(sam_type, img_size, samus)
    expected = model.state_dict()
    report = LoadReport(str(weights.path), ignored=dict(weights.set_aside))
    report.new = {key: f"SAMUS {samus_part(key)}, random init" for key in expected if samus and samus_part(key)}
    report.missing = sorted(set(expected) - set(state) - set(report.new))
    report.unexpected = sorted(set(state) - set(expected))
    if report.missing or report.unexpected:
        raise SonofmError(f"{path} is not a SAM {sam_type} checkpoint: missing keys {report.missing[:4]}, "
                          f"unexpected keys {report.unexpected[:4]}")
    fitted = {}
    for key, tensor in state.items():
        target = expected[key].shape
        if tensor.shape != target:
            tensor = _resample(key, tensor, tuple(target), path)
            report.resized[key] = f"resampled {tuple(state[key].shape)} -> {tuple(target)} for {img_size} px input"
        fitted[key] = tensor
    model.load_state_dict(fitted, strict=not report.new)
    report.loaded = sorted(fitted)
    model.load_report = report
    return model.eval()


def _resample(key: str, tensor: Tensor, target: tuple[int, ...], path: str | Path) -> Tensor:
    if key == POS_EMBED_KEY and tensor.ndim == 4 and tensor.shape[-1] == target[-1]:
        grid = tensor.permute(0, 3, 1, 2).float()  # (1, C, H, W)
        resized = F.interpolate(grid, size=target[1:3], mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1).to(tensor.dtype)
    if REL_POS_KEY.match(key) and tensor.ndim == 2 and tensor.shape[1] == target[1]:
        table = tensor.t()[None].float()  # (1, head_dim, rows)
        resized = F.interpolate(table, size=target[0], mode="linear", align_corners=False)
        return resized[0].t().to(tensor.dtype)
    raise SonofmError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, the model needs {target}")


def _detect_sam_type(state: dict[str, Tensor]) -> str | None:
    """The registered SAM type whose encoder width and depth match ``state``; None when unknown."""
    if PATCH_WEIGHT_KEY not in state:
        return None
    width = state[PATCH_WEIGHT_KEY].shape[0]
    depth = 1 + max((int(m.group(1)) for key in state if (m := BLOCK_KEY.match(key))), default=-1)
    return next((name for name, spec in SAM_TYPES.items() if (spec.embed_dim, spec.depth) == (width, depth)), None)


def save_sam_checkpoint(model: Sam, path: str | Path) -> Path:
    """Write ``model``'s state dict as a flat torch file, the official checkpoints' format (for tests and tools)."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    return atomic_write(path, lambda temporary: torch.save(state, temporary))
