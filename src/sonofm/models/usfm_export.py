"""Writing a ``UsfmViT`` in the official ``USFM_latest.pth`` layout, for tools that load the official weights.

The layout is a flat ``torch.save`` dict: ``cls_token``, ``patch_embed.*``, one relative position table shared by
all blocks (``rel_pos_bias.relative_position_bias_table``), ``blocks.*`` (layer scale ``gamma_1``, ``gamma_2``,
``attn.q_bias``/``attn.v_bias``; no per-block tables, no index buffers), ``norm.*`` and ``mask_token``, in that
order. The table is written for the model's own patch grid: ``(2h-1)(2w-1)+3`` rows, ``[732, heads]`` only for a
224 px model; the official loader resamples a table whose grid differs from the one it builds.
"""

from pathlib import Path

import torch
from torch import Tensor

from sonofm.atomic import atomic_write
from sonofm.errors import SonofmError
from sonofm.models.state_dict_file import TORCH_SUFFIXES
from sonofm.models.usfm_checkpoint import merge_block_tables
from sonofm.models.usfm_vit import UsfmViT

KEY_ORDER = ("cls_token", "patch_embed", "rel_pos_bias", "blocks", "norm", "mask_token")
ONE_TABLE_ADVICE = (
    "the official USFM layout has one relative position table shared by all blocks; "
    "pretrain with shared_rel_pos_bias=True to export"
)


def export_usfm_checkpoint(model: UsfmViT, path: str | Path) -> Path:
    """Write ``model``'s weights to ``path`` (``.pth``) in the official USFM layout, atomically; returns the path.

    A per-block model is exported only when all its block tables are equal (then that table is the shared one).
    """
    path = Path(path)
    if path.suffix.lower() not in TORCH_SUFFIXES:
        raise SonofmError(f"USFM export path must end in {', '.join(TORCH_SUFFIXES)} (a torch pickle): {path}")
    state = official_state_dict(model)
    return atomic_write(path, lambda temporary: torch.save(state, temporary))


def official_state_dict(model: UsfmViT) -> dict[str, Tensor]:
    """``model``'s tensors under the official key names and order, detached, on the CPU and contiguous."""
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    if not model.shared_rel_pos_bias:
        try:
            merge_block_tables(state, ONE_TABLE_ADVICE)
        except SonofmError as error:
            raise SonofmError(f"cannot export in the official USFM layout: {error}") from None
    return dict(sorted(state.items(), key=lambda item: KEY_ORDER.index(item[0].partition(".")[0])))
