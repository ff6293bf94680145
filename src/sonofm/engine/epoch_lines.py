"""Training progress in a log: one line per epoch instead of a redrawn bar (see :mod:`sonofm.progress`)."""

from __future__ import annotations

import sys

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from sonofm.progress import in_terminal


class EpochLines(ProgressBar):
    """Lightning's progress for logs: after each training epoch, one line with the epoch's mean training losses and
    its validation metrics (rank 0 only)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        metrics = {key.removesuffix("_epoch"): float(value) for key, value in sorted(trainer.callback_metrics.items())
                   if not key.endswith("_step")}
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        values = ", ".join(f"{key} {value:.4f}" for key, value in sorted(metrics.items()))
        print(f"epoch {trainer.current_epoch + 1}{total} (step {trainer.global_step}): {values}", file=sys.stderr,
              flush=True)


def training_progress() -> ProgressBar:
    """The progress callback of a training run: a redrawn bar on a terminal, one line per epoch in a log."""
    return TQDMProgressBar(refresh_rate=1) if in_terminal() else EpochLines()
