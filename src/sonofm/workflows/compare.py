"""``sonofm experiment compare``: several initialisations fine-tuned on the same splits, folds and seeds.

Each (init, fraction, seed[, fold]) is an ordinary fine-tuning run; runs that differ only by their init share their
split, training subset and seed. Without ``folds`` every run is tested on one fixed grouped split (``split_seed``);
with ``folds`` K, on each fold of a grouped K-fold cross-validation in turn (as ``sonofm kfold``: the best epoch is
chosen on a validation part carved from the other folds). The experiment folder::

    DIR/config.yaml                          this config
    DIR/folds.csv, DIR/splits/fold_K.csv     with folds: every image's fold, round K's train/val/test
    DIR/runs/<init>_f<fraction>_s<seed>[_fold<K>]/   one fine-tuning run folder each
    DIR/results.csv, summary.csv, paired_differences.csv, compare.png
    DIR/metrics.json                         mean per init and fraction, mean paired differences; marks it finished

Rerunning resumes: finished runs are read back, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonofm.atomic import atomic_write_json, atomic_write_text
from sonofm.data.layouts import load_index
from sonofm.data.splits import fold_split, save_folds, save_split
from sonofm.data.validate import assert_valid
from sonofm.engine.config import FinetuneConfig
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.trainer import Echo
from sonofm.errors import raise_first_failure
from sonofm.models import create_backbone
from sonofm.report.figures import plot_label_efficiency
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.workflows.fold_assignment import fold_assignment
from sonofm.workflows.init_specs import init_checks, init_weights, parse_init, reference_init
from sonofm.workflows.paired_differences import paired_differences
from sonofm.workflows.study import REPORTED, StudyConfig, StudyRun, run_study
from sonofm.workflows.study_summary import csv_text, summarise


@dataclass
class CompareConfig(StudyConfig):
    """The experiment (saved as its ``config.yaml``): the study settings plus ``inits`` (``--init`` specs, see
    :mod:`sonofm.workflows.init_specs`), ``folds`` (None: one fixed split) and ``group_by``, every run's grouping
    column (also that of the folds)."""

    inits: list[str] = field(default_factory=list)
    folds: int | None = None
    group_by: str | None = None

    def checks(self) -> list[tuple[bool, str]]:
        """The experiment's own ``(ok, message)`` pairs, then those of its fine-tuning runs."""
        own = [*self.study_checks(), *init_checks(self.inits),
               (self.folds is None or self.folds >= 2, f"--folds must be >= 2, got {self.folds}")]
        if not all(ok for ok, _ in own):
            return own
        return [*own, *self.run_config(1.0, 0, None, None).checks()]

    def validate(self) -> None:
        """Raise SonofmError for the first bad value, in the experiment or in any run it would start."""
        raise_first_failure(self.checks())

    def run_config(self, fraction: float, seed: int, weights: str | None, split_file: Path | None) -> FinetuneConfig:
        """One run's fine-tuning config; ``split_file``: its round's split (with folds)."""
        changes: dict[str, Any] = {"group_by": self.group_by}
        if split_file is not None:
            changes["split_file"] = str(split_file)
        return self.finetune_config(fraction, seed, weights, **changes)


def run_compare(config: CompareConfig, out: str | Path, overwrite: bool = False,
                echo: Echo = print) -> dict[str, float]:
    """Fine-tune every (init, fraction, seed[, fold]), then write the results, summary, paired differences against
    the reference init (the first scratch, else the first) and the figure; returns ``metrics.json``'s values."""
    config.validate()
    specs = [parse_init(text) for text in config.inits]
    weights = {spec.name: init_weights(spec) for spec in specs}  # a missing run or file stops before any write
    with rank_zero_first(config.run_config(1.0, 0, None, None).accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        for path in filter(None, weights.values()):  # a file that does not fit --model stops before any write
            create_backbone(config.model, img_size=config.img_size, weights=path, **config.model_args)
        if zero:
            _prepare_folder(config, run, resuming, echo)
    rounds = range(config.folds) if config.folds else [None]
    plan = [StudyRun(spec.name, fraction, seed, fold, run.path / "runs" / _run_name(spec.name, fraction, seed, fold),
                     config.run_config(fraction, seed, weights[spec.name], _round_split(run, fold)))
            for fraction in config.fractions for seed in range(config.seeds) for fold in rounds for spec in specs]
    echo(f"comparing {', '.join(spec.name for spec in specs)} on {config.data}: {len(plan)} runs of {config.model}")
    rows = run_study(plan, config.task, zero, echo)
    if not zero:  # every rank trained; rank 0 alone writes the results
        return {}
    return _summarise(config, run, rows, reference_init(specs).name, echo)


def _prepare_folder(config: CompareConfig, run: RunFolder, resuming: bool, echo: Echo) -> None:
    """Save the config and, with folds, ``folds.csv`` and every round's split (the saved folds when resuming)."""
    if not config.folds:
        save_config(config, run.config)
        return
    index = load_index(config.data, task=config.task, group_by=config.group_by,
                       num_classes=config.seg.num_classes if config.task == "seg" else None)
    assert_valid(index)
    folds = fold_assignment(index, run.path / "folds.csv", resuming, config.split_seed, config.folds)
    if index.grouping_hint:
        echo(f"warning: {index.grouping_hint}")
    save_config(config, run.config)
    save_folds(index, folds, run.path / "folds.csv")
    for fold in range(config.folds):
        save_split(fold_split(index.samples, folds, fold, seed=config.split_seed), _round_split(run, fold))


def _round_split(run: RunFolder, fold: int | None) -> Path | None:
    return None if fold is None else run.path.resolve() / "splits" / f"fold_{fold}.csv"


def _run_name(init: str, fraction: float, seed: int, fold: int | None) -> str:
    return f"{init}_f{fraction:g}_s{seed}" + ("" if fold is None else f"_fold{fold}")


def _summarise(config: CompareConfig, run: RunFolder, rows: list[dict[str, Any]], reference: str,
               echo: Echo) -> dict[str, float]:
    """Write the results, summary, paired differences and figure, then ``metrics.json`` (last: it marks the
    experiment finished); print the comparison."""
    keys = REPORTED[config.task]
    summary = summarise(rows, keys)
    paired = paired_differences(rows, keys, reference)
    atomic_write_text(run.path / "results.csv", csv_text(rows))
    atomic_write_text(run.path / "summary.csv", csv_text(summary))
    atomic_write_text(run.path / "paired_differences.csv", csv_text(paired))
    repeats = f"{config.seeds} seeds" + (f" × {config.folds} folds" if config.folds else "")
    plot_label_efficiency(summary, keys[0], run.path / "compare.png",
                          f"{Path(config.data).name}: {config.model} at {config.img_size} px, {repeats}")
    metrics = {f"{row['init']}/f{row['fraction']:g}/{key}": row[f"{key}_mean"] for row in summary for key in keys}
    metrics |= {f"{entry['init']}-{reference}/f{entry['fraction']:g}/{entry['metric']}": entry["mean"]
                for entry in paired}
    atomic_write_json(run.metrics, metrics)
    echo(format_comparison(summary, paired, keys[0], reference))
    echo(f"results in {run.path}: results.csv, summary.csv, paired_differences.csv, compare.png, runs/")
    return metrics


def format_comparison(summary: list[dict[str, Any]], paired: list[dict[str, Any]], key: str, reference: str) -> str:
    """A fixed-width table: per (fraction, init) the runs and ``key``'s mean ± std, and the mean paired difference
    against ``reference`` with its 95 % interval."""
    difference = {(entry["fraction"], entry["init"]): entry for entry in paired if entry["metric"] == key}
    lines = [f"{'fraction':>8}  {'init':<12}  {'runs':>4}  {key + ' mean ± std':>32}  paired difference − {reference} "
             "[95 % CI]"]
    for row in summary:
        entry = difference.get((row["fraction"], row["init"]))
        spread = f"{row[f'{key}_mean']:.4f} ± {row[f'{key}_std']:.4f}"
        lines.append(f"{row['fraction']:>8g}  {row['init']:<12}  {row['runs']:>4}  {spread:>32}  "
                     + ("" if entry is None else _difference_text(entry)))
    return "\n".join(line.rstrip() for line in lines)


def _difference_text(entry: dict[str, Any]) -> str:
    if entry["pairs"] == 0:
        return "no pairs"
    if math.isnan(entry["ci_low"]):
        return f"{entry['mean']:+.4f} (one pair: no interval)"
    return f"{entry['mean']:+.4f} [{entry['ci_low']:+.4f}, {entry['ci_high']:+.4f}] over {entry['pairs']} pairs"
