"""A Lightning callback writing one CSV row per epoch to the run folder's ``log.csv`` (atomic, resume-safe)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import lightning as L

from sonofm.atomic import atomic_write_text


class EpochCsvLog(L.Callback):
    """Rows hold ``epoch``, ``step``, ``lr`` and every scalar in ``trainer.callback_metrics`` at the epoch's end.

    On resume, rows of epochs at or after the one being written (left by an interrupted run) are replaced.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []
        if self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as handle:
                self.rows = list(csv.DictReader(handle))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        row = {"epoch": str(trainer.current_epoch), "step": str(trainer.global_step)}
        if trainer.optimizers:
            row["lr"] = f"{max(group['lr'] for group in trainer.optimizers[0].param_groups):.6g}"
        for key, value in sorted(trainer.callback_metrics.items()):
            number = float(value)
            row[key] = "" if math.isnan(number) else f"{number:.6g}"
        self.rows = [old for old in self.rows if int(old["epoch"]) < trainer.current_epoch] + [row]
        columns: list[str] = []
        for existing in self.rows:
            columns += [key for key in existing if key not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())
