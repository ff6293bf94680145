"""USCL's optimistic figure: the test split scored after every epoch, so that the epoch with the best test accuracy
can be reported beside the validation-selected one (as USCL and ACLUS report POCUS results; labelled optimistic).

``test_per_epoch.csv`` in the run folder: ``epoch,accuracy,confusion`` rows, the (C, C) confusion matrix (rows true,
columns predicted) flattened row by row as ``;``-separated counts. Rewritten atomically after each epoch; a resumed
run keeps the rows of the epochs it does not redo.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from sonofm.atomic import atomic_write_text
from sonofm.metrics.classification import confusion_matrix

TEST_PER_EPOCH = "test_per_epoch.csv"


class EpochTestScores(L.Callback):
    """After each training epoch, rank 0 scores ``loader`` (the test split) with the current weights."""

    def __init__(self, loader: DataLoader, path: Path, num_classes: int) -> None:
        self.loader = loader
        self.path = path
        self.num_classes = num_classes

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        probs, labels = [], []
        with torch.inference_mode():
            for images, batch_labels in self.loader:
                probs.append(model(images.to(pl_module.device)).float().softmax(dim=1).cpu())
                labels.append(batch_labels)
        model.train(was_training)
        matrix = confusion_matrix(torch.cat(probs), torch.cat(labels), self.num_classes)
        epoch = trainer.current_epoch
        rows = [row for row in read_test_per_epoch(self.path) if row[0] < epoch]
        rows.append((epoch, float(matrix.diagonal().sum() / matrix.sum()), matrix))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["epoch", "accuracy", "confusion"])
        writer.writerows((row_epoch, f"{accuracy:.6f}", ";".join(str(int(v)) for v in counts.flatten().tolist()))
                         for row_epoch, accuracy, counts in rows)
        atomic_write_text(self.path, buffer.getvalue())


def read_test_per_epoch(path: Path) -> list[tuple[int, float, torch.Tensor]]:
    """``(epoch, accuracy, (C, C) int64 confusion)`` rows of ``test_per_epoch.csv``; none when it is absent."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    parsed = []
    for row in rows:
        counts = torch.tensor([int(value) for value in row["confusion"].split(";")], dtype=torch.int64)
        side = int(round(len(counts) ** 0.5))
        parsed.append((int(row["epoch"]), float(row["accuracy"]), counts.reshape(side, side)))
    return parsed


def best_test_epoch(path: Path) -> tuple[int, torch.Tensor] | None:
    """The epoch with the highest test accuracy (the first on ties) and its confusion matrix; None without rows."""
    rows = read_test_per_epoch(path)
    if not rows:
        return None
    epoch, _, matrix = max(rows, key=lambda row: (row[1], -row[0]))
    return epoch, matrix
