"""Progress output that suits where it goes: redrawn bars on a terminal, plain lines in a log file.

When standard error is not a terminal (CI, SLURM logs, ``> log.txt 2>&1``), bars print one line at each tenth of the
work (each minute when the total is unknown) and training prints one line per epoch, instead of carriage-return
redraws that fill a log with megabytes.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from tqdm import tqdm

LINES_PER_TOTAL = 10
SECONDS_PER_LINE = 60


def in_terminal() -> bool:
    """True when standard error is an interactive terminal."""
    return sys.stderr.isatty()


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal, :class:`LogLinesBar` otherwise."""
    return (tqdm if in_terminal() else LogLinesBar)(iterable, **kwargs)


class LogLinesBar(tqdm):
    """A tqdm bar for logs: a plain line at each tenth of the total (each minute without a total), never a
    carriage return; the last line is printed when the bar closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._printed: int | None = None
        super().__init__(*args, leave=False, mininterval=0, miniters=1, **kwargs)  # display() decides what prints

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # close() clearing the bar: nothing to clear in a log
            return False
        mark = self._mark()
        if mark != self._printed:
            self._printed = mark
            self.fp.write(self.format_meter(**self.format_dict) + "\n")
            self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable and self._printed != self._mark():
            self.display()
        super().close()

    def _mark(self) -> int:
        if self.total:
            return min(LINES_PER_TOTAL, int(LINES_PER_TOTAL * self.n / self.total))
        return int((self._time() - self.start_t) // SECONDS_PER_LINE)


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
