"""``sonofm experiment label-efficiency``: pretrained vs random-init fine-tuning at several label fractions.

Every fine-tuning run uses one fixed grouped train/val/test split (``split_seed``), so all runs are tested on the
same images; the seed varies initialisation, data order and which training groups a fraction keeps (nested: with
one seed, a smaller fraction's images are a subset of a larger one's). The experiment folder holds the pretraining
run (unless ``weights`` are given), one run folder per (init, fraction, seed), ``results.csv``, ``summary.csv``,
``summary.md`` and ``label_efficiency.png``. Rerunning resumes: finished runs are read, unfinished ones resumed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from sonofm.atomic import atomic_write_json, atomic_write_text
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.trainer import Echo
from sonofm.errors import raise_first_failure
from sonofm.report.figures import plot_label_efficiency
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.mim.pretrain import MimPretrainConfig, pretrain_mim
from sonofm.workflows.study import REPORTED, StudyConfig, StudyRun, run_study
from sonofm.workflows.study_summary import csv_text, format_summary, summarise

INITS = ("pretrained", "scratch")


def _pretrain_defaults() -> MimPretrainConfig:
    return MimPretrainConfig(epochs=20, batch_size=64, figure_every=0, checkpoint_every=200)


@dataclass
class LabelEfficiencyConfig(StudyConfig):
    """The experiment (saved as its ``config.yaml``): the study settings, the pretraining data or ``weights``, and
    ``pretrain``, the rest of the pretraining run's settings (``model``, ``model_args``, ``img_size``, ``progress``
    and ``loggers`` apply to it too).
    """

    pretrain_data: list[str] = field(default_factory=list)
    weights: str | None = None
    pretrain: MimPretrainConfig = field(default_factory=_pretrain_defaults)

    def checks(self) -> list[tuple[bool, str]]:
        """The experiment's own ``(ok, message)`` pairs, then those of its pretraining and fine-tuning runs."""
        own = [*self.study_checks(),
               (bool(self.pretrain_data) != bool(self.weights), "give exactly one of --pretrain-data and --weights")]
        if not all(ok for ok, _ in own):
            return own
        pretraining = self.pretrain_config().checks() if self.pretrain_data else []
        return [*own, *pretraining, *self.finetune_config(1.0, 0, None).checks()]

    def validate(self) -> None:
        """Raise SonofmError for the first bad value, in the experiment or in any run it would start."""
        raise_first_failure(self.checks())

    def pretrain_config(self) -> MimPretrainConfig:
        """The config of the pretraining run (on ``pretrain_data``)."""
        return dataclasses.replace(self.pretrain, data=list(self.pretrain_data), model=self.model,
                                   model_args=dict(self.model_args), img_size=self.img_size, progress=self.progress,
                                   loggers=list(self.loggers))


def run_label_efficiency(config: LabelEfficiencyConfig, out: str | Path, overwrite: bool = False,
                         echo: Echo = print) -> dict[str, float]:
    """Pretrain (or take ``weights``), fine-tune every (init, fraction, seed), summarise; returns the means."""
    config.validate()
    accelerator = config.finetune_config(1.0, 0, None).accelerator
    with rank_zero_first(accelerator) as zero:
        run, _ = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        if zero:
            save_config(config, run.config)
    weights = config.weights or _pretrained_weights(config, run, echo)
    plan = [StudyRun(init, fraction, seed, None, run.path / "runs" / f"{init}_f{fraction:g}_s{seed}",
                     config.finetune_config(fraction, seed, weights if init == "pretrained" else None))
            for fraction in config.fractions for seed in range(config.seeds) for init in INITS]
    rows = run_study(plan, config.task, zero, echo)
    if not zero:
        return {}
    keys = REPORTED[config.task]
    summary = summarise(rows, keys)
    atomic_write_text(run.path / "results.csv", csv_text(rows))
    atomic_write_text(run.path / "summary.csv", csv_text(summary))
    atomic_write_text(run.path / "summary.md", format_summary(summary, keys) + "\n")
    plot_label_efficiency(summary, keys[0], run.path / "label_efficiency.png",
                          f"{Path(config.data).name}: {config.model} at {config.img_size} px, {config.seeds} seeds")
    means = {f"{row['init']}/f{row['fraction']:g}/{key}": row[f"{key}_mean"] for row in summary for key in keys}
    atomic_write_json(run.metrics, means)
    echo(format_summary(summary, keys) + f"\nresults in {run.path}")
    return means


def _pretrained_weights(config: LabelEfficiencyConfig, run: RunFolder, echo: Echo) -> str:
    """Pretrain into ``RUN/pretrain`` (resumed or reused when already there); return its encoder file."""
    folder = RunFolder(run.path / "pretrain")
    if not folder.is_finished:
        echo(f"pretraining {config.model} on {', '.join(config.pretrain_data)}")
        pretrain_mim(config.pretrain_config(), folder.path, echo=echo)
    return str(folder.model)
