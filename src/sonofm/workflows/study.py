"""The shared part of the multi-run fine-tuning studies (``experiment label-efficiency``, ``experiment compare``):
their common settings, and one fine-tuning run per (init, fraction, seed[, fold]) cell, each in its own run folder,
trained once (finished runs are read back, an interrupted one resumes)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonofm.engine.config import FinetuneConfig
from sonofm.engine.trainer import Echo
from sonofm.runs.run_folder import RunFolder
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier
from sonofm.tasks.seg.finetune import SegFinetuneConfig, finetune_segmenter

# task -> test metrics reported (the first one is plotted and compared)
REPORTED = {
    "cls": ("test/balanced_accuracy", "test/macro_f1", "test/auroc"),
    "seg": ("test/dice", "test/iou", "test/hd95"),
}


@dataclass
class StudyConfig:
    """Settings every run of a study shares. ``model``, ``model_args``, ``img_size``, ``progress`` and ``loggers``
    apply to every run; ``cls`` and ``seg`` hold the rest of each task's fine-tuning settings (``--set
    cls.epochs=20``). Every run is tested on one grouped split (``split_seed``) unless the study gives it a
    ``split_file``; the seed varies initialisation, data order and which training groups a fraction keeps."""

    task: str = "cls"
    data: str = ""
    model: str = "usfm_vit_small_patch16"
    model_args: dict[str, Any] = field(default_factory=dict)
    img_size: int = 128
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 1.0])
    seeds: int = 3
    split_seed: int = 0
    progress: bool = True
    loggers: list[str] = field(default_factory=list)
    cls: ClsFinetuneConfig = field(default_factory=lambda: ClsFinetuneConfig(epochs=20, batch_size=32))
    seg: SegFinetuneConfig = field(default_factory=lambda: SegFinetuneConfig(epochs=20, batch_size=16))

    def study_checks(self) -> list[tuple[bool, str]]:
        """``(ok, message)`` pairs of the shared settings."""
        return [
            (self.task in REPORTED, f"--task must be cls or seg, got {self.task!r}"),
            (bool(self.data), "--data is required"),
            (bool(self.fractions) and all(0 < f <= 1 for f in self.fractions),
             f"--fractions must be numbers in (0, 1], got {self.fractions}"),
            (self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}"),
        ]

    def finetune_config(self, fraction: float, seed: int, weights: str | None, **changes: Any) -> FinetuneConfig:
        """The fine-tuning config of one run (from ``weights``, or random init when None); ``changes`` set more
        fields (``split_file``, ``group_by``)."""
        base = self.cls if self.task == "cls" else self.seg
        return dataclasses.replace(
            base, data=self.data, model=self.model, model_args=dict(self.model_args), img_size=self.img_size,
            train_fraction=fraction, seed=seed, split_seed=self.split_seed, weights=weights, progress=self.progress,
            loggers=list(self.loggers), **changes,
        )


@dataclass(frozen=True)
class StudyRun:
    """One cell of a study: its initialisation's name, fraction, seed and fold (None without folds), its run
    folder and its fine-tuning config."""

    init: str
    fraction: float
    seed: int
    fold: int | None
    path: Path
    config: FinetuneConfig

    @property
    def cell(self) -> dict[str, Any]:
        """The row keys: init, fraction, seed, and fold when there are folds."""
        keys = {"init": self.init, "fraction": self.fraction, "seed": self.seed}
        return keys if self.fold is None else {**keys, "fold": self.fold}


def run_study(runs: list[StudyRun], task: str, zero: bool, echo: Echo) -> list[dict[str, Any]]:
    """Fine-tune every run in order (a finished one is read back, an unfinished one resumes). On rank 0, one row
    per run: its cell and the ``REPORTED`` test metrics (NaN when missing); the other ranks only train: ``[]``."""
    train = finetune_classifier if task == "cls" else finetune_segmenter
    first = REPORTED[task][0]
    rows = []
    for number, run in enumerate(runs, start=1):
        folder = RunFolder(run.path)
        kept = folder.is_finished
        if kept:
            values = json.loads(folder.metrics.read_text(encoding="utf-8"))
        else:
            values = train(run.config, run.path, echo=lambda _: None)
        if not zero:  # every rank trained; rank 0 alone evaluated and reports
            continue
        reported = {key: values.get(key, math.nan) for key in REPORTED[task]}
        rows.append({**run.cell, **reported})
        where = f"{run.init:10s} fraction {run.fraction:g} seed {run.seed}"
        where += "" if run.fold is None else f" fold {run.fold}"
        echo(f"[{number}/{len(runs)}] {where}: {first} {reported[first]:.4f}" + (" (finished earlier)" if kept else ""))
    return rows
