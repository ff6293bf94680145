"""``sonofm experiment label-efficiency``: pretrained vs random-init fine-tuning at several label fractions.

Every fine-tuning run uses one fixed grouped train/val/test split (``split_seed``), so all runs are tested on the
same images; the seed varies initialisation, data order and which training groups a fraction keeps (nested: with
one seed, a smaller fraction's images are a subset of a larger one's). The experiment folder holds the pretraining
run (unless ``weights`` are given), one run folder per (init, fraction, seed), ``results.csv``, ``summary.csv``,
``summary.md`` and ``label_efficiency.png``. Rerunning resumes: finished runs are read, unfinished ones resumed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonofm.atomic import atomic_write_json, atomic_write_text
from sonofm.engine.config import FinetuneConfig
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.trainer import Echo
from sonofm.errors import raise_first_failure
from sonofm.report.figures import plot_label_efficiency
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier
from sonofm.tasks.mim.pretrain import MimPretrainConfig, pretrain_mim
from sonofm.tasks.seg.finetune import SegFinetuneConfig, finetune_segmenter

INITS = ("pretrained", "scratch")
# task -> metrics reported (the first one is plotted)
REPORTED = {
    "cls": ("test/balanced_accuracy", "test/macro_f1", "test/auroc"),
    "seg": ("test/dice", "test/iou", "test/hd95"),
}


def _pretrain_defaults() -> MimPretrainConfig:
    return MimPretrainConfig(epochs=20, batch_size=64, figure_every=0, checkpoint_every=200)


@dataclass
class LabelEfficiencyConfig:
    """The experiment (saved as its ``config.yaml``). ``model``, ``model_args``, ``img_size``, ``progress`` and
    ``loggers`` apply to pretraining and every fine-tuning run; ``pretrain``, ``cls`` and ``seg`` hold the rest of each
    step's settings (``--set cls.epochs=20``).
    """

    task: str = "cls"
    data: str = ""
    pretrain_data: list[str] = field(default_factory=list)
    weights: str | None = None
    model: str = "usfm_vit_small_patch16"
    model_args: dict[str, Any] = field(default_factory=dict)
    img_size: int = 128
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 1.0])
    seeds: int = 3
    split_seed: int = 0
    progress: bool = True
    loggers: list[str] = field(default_factory=list)
    pretrain: MimPretrainConfig = field(default_factory=_pretrain_defaults)
    cls: ClsFinetuneConfig = field(default_factory=lambda: ClsFinetuneConfig(epochs=20, batch_size=32))
    seg: SegFinetuneConfig = field(default_factory=lambda: SegFinetuneConfig(epochs=20, batch_size=16))

    def checks(self) -> list[tuple[bool, str]]:
        """The experiment's own ``(ok, message)`` pairs, then those of its pretraining and fine-tuning runs."""
        own = [
            (self.task in REPORTED, f"--task must be cls or seg, got {self.task!r}"),
            (bool(self.data), "--data is required"),
            (bool(self.pretrain_data) != bool(self.weights), "give exactly one of --pretrain-data and --weights"),
            (bool(self.fractions) and all(0 < f <= 1 for f in self.fractions),
             f"--fractions must be numbers in (0, 1], got {self.fractions}"),
            (self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}"),
        ]
        if not all(ok for ok, _ in own):
            return own
        pretraining = self.pretrain_config().checks() if self.pretrain_data else []
        return [*own, *pretraining, *self.finetune_config("scratch", 1.0, 0, None).checks()]

    def validate(self) -> None:
        """Raise SonofmError for the first bad value, in the experiment or in any run it would start."""
        raise_first_failure(self.checks())

    def pretrain_config(self) -> MimPretrainConfig:
        """The config of the pretraining run (on ``pretrain_data``)."""
        return dataclasses.replace(self.pretrain, data=list(self.pretrain_data), model=self.model,
                                   model_args=dict(self.model_args), img_size=self.img_size, progress=self.progress,
                                   loggers=list(self.loggers))

    def finetune_config(self, init: str, fraction: float, seed: int, weights: str | None) -> FinetuneConfig:
        """The fine-tuning config of one run."""
        base = self.cls if self.task == "cls" else self.seg
        return dataclasses.replace(
            base, data=self.data, model=self.model, model_args=dict(self.model_args), img_size=self.img_size,
            train_fraction=fraction, seed=seed, split_seed=self.split_seed,
            weights=weights if init == "pretrained" else None, progress=self.progress, loggers=list(self.loggers),
        )


def run_label_efficiency(config: LabelEfficiencyConfig, out: str | Path, overwrite: bool = False,
                         echo: Echo = print) -> dict[str, float]:
    """Pretrain (or take ``weights``), fine-tune every (init, fraction, seed), summarise; returns the means."""
    config.validate()
    accelerator = config.finetune_config("scratch", 1.0, 0, None).accelerator
    with rank_zero_first(accelerator) as zero:
        run, _ = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        if zero:
            save_config(config, run.config)
    weights = config.weights or _pretrained_weights(config, run, echo)
    plan = [(init, fraction, seed) for fraction in config.fractions for seed in range(config.seeds) for init in INITS]
    rows = []
    for number, (init, fraction, seed) in enumerate(plan, start=1):
        values = _finetune(config, run.path / "runs" / f"{init}_f{fraction:g}_s{seed}", init, fraction, seed, weights)
        if not zero:  # every rank trained; rank 0 alone evaluated and writes the results
            continue
        reported = {key: values.get(key, math.nan) for key in REPORTED[config.task]}
        rows.append({"init": init, "fraction": fraction, "seed": seed, **reported})
        first = REPORTED[config.task][0]
        echo(f"[{number}/{len(plan)}] {init:10s} fraction {fraction:g} seed {seed}: {first} {reported[first]:.4f}")
    if not zero:
        return {}
    summary = summarise(rows, REPORTED[config.task])
    _write_outputs(run, config, rows, summary)
    means = {f"{row['init']}/f{row['fraction']:g}/{key}": row[f"{key}_mean"]
             for row in summary for key in REPORTED[config.task]}
    atomic_write_json(run.metrics, means)
    echo(format_summary(summary, REPORTED[config.task]) + f"\nresults in {run.path}")
    return means


def _pretrained_weights(config: LabelEfficiencyConfig, run: RunFolder, echo: Echo) -> str:
    """Pretrain into ``RUN/pretrain`` (resumed or reused when already there); return its encoder file."""
    folder = RunFolder(run.path / "pretrain")
    if not folder.is_finished:
        echo(f"pretraining {config.model} on {', '.join(config.pretrain_data)}")
        pretrain_mim(config.pretrain_config(), folder.path, echo=echo)
    return str(folder.model)


def _finetune(config: LabelEfficiencyConfig, path: Path, init: str, fraction: float, seed: int,
              weights: str) -> dict[str, float]:
    folder = RunFolder(path)
    if folder.is_finished:
        return json.loads(folder.metrics.read_text(encoding="utf-8"))
    finetune = config.finetune_config(init, fraction, seed, weights)
    train = finetune_classifier if config.task == "cls" else finetune_segmenter
    return train(finetune, path, echo=lambda _: None)


def summarise(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Mean and sample std (0 for one seed) of ``keys`` per (init, fraction), NaN values left out."""
    summary = []
    for fraction in sorted({row["fraction"] for row in rows}):
        for init in INITS:
            group = [row for row in rows if row["init"] == init and row["fraction"] == fraction]
            entry: dict = {"init": init, "fraction": fraction, "runs": len(group)}
            for key in keys:
                values = [row[key] for row in group if not math.isnan(row[key])]
                entry[f"{key}_mean"] = statistics.fmean(values) if values else math.nan
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            summary.append(entry)
    return summary


def format_summary(summary: list[dict], keys: tuple[str, ...]) -> str:
    """A Markdown table: one row per (fraction, init), ``mean ± std`` per metric."""
    lines = ["| fraction | init | runs | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    for row in summary:
        cells = [f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}" for key in keys]
        lines.append(f"| {row['fraction']:g} | {row['init']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_outputs(run: RunFolder, config: LabelEfficiencyConfig, rows: list[dict], summary: list[dict]) -> None:
    keys = REPORTED[config.task]
    atomic_write_text(run.path / "results.csv", _csv(rows))
    atomic_write_text(run.path / "summary.csv", _csv(summary))
    atomic_write_text(run.path / "summary.md", format_summary(summary, keys) + "\n")
    plot_label_efficiency(summary, keys[0], run.path / "label_efficiency.png",
                          f"{Path(config.data).name}: {config.model} at {config.img_size} px, {config.seeds} seeds")


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
