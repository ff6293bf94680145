"""Named training protocols for classification fine-tuning: sets of ``--set``-style overrides applied before flags."""

from __future__ import annotations

from typing import TypeVar

from sonofm.errors import SonofmError
from sonofm.runs.config import apply_overrides

ConfigT = TypeVar("ConfigT")

CLS_PRESETS: dict[str, tuple[str, ...]] = {
    # The USCL/ACLUS POCUS evaluation protocol: the backbone's last stage and the head trained with Adam (L2 weight
    # decay 1e-4) at LR 0.01, no layer decay, no warmup, cosine schedule, 30 epochs of batch 32.
    "uscl": (
        "mode=partial", "optim.optimizer=adam", "optim.lr=0.01", "optim.weight_decay=1e-4", "optim.layer_decay=1.0",
        "optim.warmup_epochs=0", "epochs=30", "batch_size=32",
    ),
}


def apply_preset(config: ConfigT, name: str) -> ConfigT:
    """``config`` with the overrides of preset ``name`` applied (a new config; flags and ``--set`` go on top)."""
    if name not in CLS_PRESETS:
        raise SonofmError(f"unknown preset {name!r}; presets: {', '.join(CLS_PRESETS)}")
    return apply_overrides(config, list(CLS_PRESETS[name]))
