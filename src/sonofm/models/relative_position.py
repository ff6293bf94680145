"""Resampling BEiT relative position bias tables to another patch grid.

A table for an ``h x w`` grid has ``(2h-1)(2w-1) + 3`` rows (offsets ``dy, dx`` row-major, then 3 CLS rows) and one
column per head. To move it to a larger (or smaller) grid, the source offsets ``0, ±1, ±(1+q), ±(1+q+q²), ...`` are
spread geometrically so that the outermost one lands on the target's outermost offset (``q`` found by root
bracketing), and each head is interpolated with a cubic spline at the target's integer offsets; the CLS rows are
kept. This is the BEiT fine-tuning recipe that USFM uses. timm's ``resize_rel_pos_bias_table`` does the same
placement but interpolates linearly (its cubic path needs ``scipy.interpolate.interp2d``, removed in SciPy 1.14),
hence this module.
"""

import math

import numpy as np
import torch
from scipy.interpolate import make_interp_spline
from scipy.optimize import brentq
from torch import Tensor

NUM_CLS_ROWS = 3
MIN_GRID = 3  # a cubic spline needs at least 4 knots per axis: 2*3-1 = 5 offsets


def table_rows(grid: tuple[int, int]) -> int:
    """Rows of the table for a patch grid ``(h, w)``."""
    return (2 * grid[0] - 1) * (2 * grid[1] - 1) + NUM_CLS_ROWS


def square_grid_for_rows(rows: int) -> tuple[int, int] | None:
    """The square patch grid whose table has ``rows`` rows, or None if there is none."""
    span = math.isqrt(rows - NUM_CLS_ROWS) if rows > NUM_CLS_ROWS else 0
    if span % 2 == 0 or span * span != rows - NUM_CLS_ROWS:
        return None
    side = (span + 1) // 2
    return side, side


def geometric_offsets(src_grid: int, dst_grid: int) -> np.ndarray:
    """Positions, in target offset units, of the ``2*src_grid - 1`` source offsets along one axis.

    Increments between neighbours grow (or shrink) geometrically from 1 so that the last position equals
    ``dst_grid - 1``; for equal grids they are the integers ``-(g-1) .. g-1``.
    """
    steps, reach = src_grid - 1, dst_grid - 1

    def overshoot(ratio: float) -> float:
        return float(np.sum(ratio ** np.arange(steps))) - reach

    ratio = 1.0 if steps == reach else brentq(overshoot, 0.0, max(1.0, float(reach)), xtol=1e-14)
    positive = np.cumsum(ratio ** np.arange(steps))
    return np.concatenate((-positive[::-1], [0.0], positive))


def resample_bias_table(table: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]) -> Tensor:
    """Table ``(rows(src_grid), heads)`` -> ``(rows(dst_grid), heads)``; unchanged if the grids are equal."""
    if tuple(src_grid) == tuple(dst_grid):
        return table
    if min(*src_grid, *dst_grid) < MIN_GRID:
        raise ValueError(f"relative position resampling needs grids of at least {MIN_GRID}x{MIN_GRID}")
    heads = table.shape[1]
    span_y, span_x = 2 * src_grid[0] - 1, 2 * src_grid[1] - 1
    patch_part = table[:-NUM_CLS_ROWS].detach().double().cpu().numpy().reshape(span_y, span_x, heads)
    target_y = np.arange(-(dst_grid[0] - 1), dst_grid[0], dtype=np.float64)
    target_x = np.arange(-(dst_grid[1] - 1), dst_grid[1], dtype=np.float64)
    # A tensor-product cubic spline is separable: interpolate along dy, then along dx.
    along_y = make_interp_spline(geometric_offsets(src_grid[0], dst_grid[0]), patch_part, k=3, axis=0)(target_y)
    resampled = make_interp_spline(geometric_offsets(src_grid[1], dst_grid[1]), along_y, k=3, axis=1)(target_x)
    patch_rows = torch.from_numpy(resampled.reshape(-1, heads)).to(dtype=table.dtype, device=table.device)
    return torch.cat((patch_rows, table[-NUM_CLS_ROWS:].detach()), dim=0)
