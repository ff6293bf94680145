"""Fitting USFM-style weights to a ``UsfmViT``: shared or per-block relative position tables, other patch grids.

``USFM_latest.pth`` is a flat state dict whose blocks share one relative position table,
``rel_pos_bias.relative_position_bias_table``, learned on a 14x14 grid (224 px). A per-block model gets a copy of the
shared table in each block; a shared-table model keeps it. Per-block tables load into a shared-table model only
when all blocks hold the same table. Tables learned on another grid are resampled to the model's grid.
"""

import re

import torch
from torch import Tensor

from sonofm.errors import SonofmError
from sonofm.models.relative_position import resample_bias_table, square_grid_for_rows, table_rows
from sonofm.models.usfm_vit import UsfmViT

SHARED_TABLE_KEY = "rel_pos_bias.relative_position_bias_table"
TABLE_SUFFIX = "relative_position_bias_table"
BLOCK_TABLE_KEY = re.compile(rf"blocks\.\d+\.attn\.{TABLE_SUFFIX}")
PER_BLOCK_INTO_SHARED = (
    "a model with shared_rel_pos_bias loads per-block tables only when every block holds the same one; "
    "build the model without shared_rel_pos_bias"
)


def adapt_usfm_state_dict(state: dict[str, Tensor], model: UsfmViT) -> tuple[dict[str, str], dict[str, str]]:
    """Rewrite ``state`` in place to fit ``model``; returns (consumed key -> note, resampled key -> note)."""
    if model.shared_rel_pos_bias:
        consumed = {} if SHARED_TABLE_KEY in state else merge_block_tables(state, PER_BLOCK_INTO_SHARED)
    else:
        consumed = expand_shared_table(state, model.depth) if SHARED_TABLE_KEY in state else {}
    return consumed, fit_tables_to_grid(state, model.grid_size)


def expand_shared_table(state: dict[str, Tensor], depth: int) -> dict[str, str]:
    """Replace the shared table by one entry per block (a block's own table, if present, wins)."""
    shared = state.pop(SHARED_TABLE_KEY)
    for index in range(depth):
        state.setdefault(f"blocks.{index}.attn.{TABLE_SUFFIX}", shared)
    return {SHARED_TABLE_KEY: "shared table, copied into every block's attn.relative_position_bias_table"}


def merge_block_tables(state: dict[str, Tensor], advice: str) -> dict[str, str]:
    """Replace per-block tables that are all equal by the one shared table; returns consumed key -> note.

    Raises SonofmError naming the first block table that differs from block 0's, followed by ``advice``.
    """
    keys = [key for key in state if BLOCK_TABLE_KEY.fullmatch(key)]
    if not keys:
        return {}
    first = state[keys[0]]
    different = next((key for key in keys[1:] if not torch.equal(state[key], first)), None)
    if different is not None:
        raise SonofmError(f"{different} differs from {keys[0]}, so the blocks share no single table; {advice}")
    for key in keys:
        del state[key]
    state[SHARED_TABLE_KEY] = first
    return {key: f"the same in every block, loaded as the shared {SHARED_TABLE_KEY}" for key in keys}


def fit_tables_to_grid(state: dict[str, Tensor], grid: tuple[int, int]) -> dict[str, str]:
    """Resample every relative position table whose row count belongs to another (square) patch grid."""
    notes = {}
    for key, table in state.items():
        if not key.endswith(TABLE_SUFFIX) or table.ndim != 2 or table.shape[0] == table_rows(grid):
            continue
        source_grid = square_grid_for_rows(table.shape[0])
        if source_grid is None:
            raise SonofmError(f"{key} has {table.shape[0]} rows, which fits no square patch grid")
        state[key] = resample_bias_table(table, source_grid, grid)
        notes[key] = f"resampled from a {source_grid[0]}x{source_grid[1]} to a {grid[0]}x{grid[1]} patch grid"
    return notes
