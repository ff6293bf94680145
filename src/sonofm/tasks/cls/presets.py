"""Named training protocols for classification fine-tuning: ``--set``-style overrides applied before flags."""

from __future__ import annotations

from sonofm.errors import SonofmError
from sonofm.runs.config import Override, parse_override

CLS_PRESETS: dict[str, tuple[str, ...]] = {
    # The USCL/ACLUS POCUS evaluation protocol (USCL's eval_pretrained_model.py, as ACLUS reuses it): the backbone's
    # last block and a linear head on the pooled features trained with Adam (L2 weight decay 1e-4) at LR 0.01, no
    # layer decay, no warmup, cosine to 0, 30 epochs of batch 32; plain cross-entropy (no label smoothing, no class
    # weights), no drop path, no gradient clipping, USCL's augmentation; the epoch is still chosen on validation, and
    # USCL's best-test-epoch figure is reported beside it, labelled optimistic.
    "uscl": (
        "mode=last_block", "head=linear", "augment=uscl", "label_smoothing=0", "class_balance=none", "drop_path=0",
        "optim.grad_clip=0", "optim.optimizer=adam", "optim.lr=0.01", "optim.weight_decay=1e-4",
        "optim.layer_decay=1.0", "optim.warmup_epochs=0", "optim.min_lr_ratio=0", "epochs=30", "batch_size=32",
        "report_best_test_epoch=true",
    ),
}


def preset_overrides(name: str) -> list[Override]:
    """The overrides of preset ``name``, to apply before flags and ``--set`` (which win over them)."""
    if name not in CLS_PRESETS:
        raise SonofmError(f"unknown preset {name!r}; presets: {', '.join(CLS_PRESETS)}")
    return [parse_override(item, source=f"preset {name}:") for item in CLS_PRESETS[name]]
