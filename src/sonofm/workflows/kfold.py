"""``sonofm kfold``: grouped k-fold cross-validation of classification fine-tuning, one run folder per fold.

In round K the test part is fold K; the best epoch is chosen on a validation part carved (grouped, stratified) from
the other folds, never on the test fold. The run folder holds::

    RUN/config.yaml              this config
    RUN/folds.csv                every image's fold (name,fold,group,label, as `sonofm data split` writes)
    RUN/splits/fold_K.csv        round K's train/val/test (the fold run's ``split_file``)
    RUN/fold_K/                  an ordinary fine-tuning run folder per round
    RUN/metrics.json             per-fold, mean/std and pooled metrics (see ``kfold_summary``); marks the run finished
    RUN/folds_summary.csv, RUN/confusion_matrix_summed.{png,csv}, RUN/gradcam/fold_K_<class>_<name>.png

Rerunning the same command resumes: finished folds are kept, an interrupted one resumes from its ``last.ckpt``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from sonofm.atomic import atomic_write_json
from sonofm.data.layouts import load_index
from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.splits import fold_split, load_split, save_folds, save_split
from sonofm.data.validate import assert_valid
from sonofm.engine.distributed import attach_run, is_rank_zero, rank_zero_first
from sonofm.engine.trainer import Echo
from sonofm.metrics.classification import confusion_metrics
from sonofm.models import create_backbone
from sonofm.models.state_dict_file import WeightsFile, read_weights_file
from sonofm.report.confusion_table import read_confusion_csv, write_confusion_csv
from sonofm.report.figures import plot_confusion_matrix
from sonofm.report.gradcam_examples import first_per_class, write_gradcam_examples
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.runs.run_model import load_run_model
from sonofm.tasks.cls.epoch_test_scores import TEST_PER_EPOCH, best_test_epoch
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier
from sonofm.workflows.fold_assignment import fold_assignment
from sonofm.workflows.kfold_summary import format_table, summarise_folds, write_folds_summary

TASKS = ("cls",)


@dataclass
class KfoldConfig(ClsFinetuneConfig):
    """A classification fine-tuning config (every fold's) plus the cross-validation settings.

    ``folds``: number of folds (default 5, or as many as ``fold_file`` holds). ``fold_file``: a ``name,fold,...``
    CSV fixing the folds; else grouped, stratified folds seeded by ``split_seed`` (default ``seed``), which also
    seeds the validation carve. ``gradcam_per_class``: Grad-CAM figures per class and fold (0: none).
    ``split_ratios`` plays no part here.
    """

    task: str = "cls"
    folds: int | None = None
    fold_file: str | None = None
    gradcam_per_class: int = 2

    def checks(self) -> list[tuple[bool, str]]:
        return [
            (self.task in TASKS, f"--task must be one of {', '.join(TASKS)} (k-fold supports classification only "
                                 f"for now), got {self.task!r}"),
            *super().checks(),
            (self.folds is None or self.folds >= 2, f"--folds must be >= 2, got {self.folds}"),
            (self.split_file is None, "split_file is chosen per fold by k-fold cross-validation; leave it unset"),
            (self.gradcam_per_class >= 0, f"--gradcam-per-class must be >= 0, got {self.gradcam_per_class}"),
        ]

    @property
    def fold_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def fold_config(self, split_file: Path) -> ClsFinetuneConfig:
        """The fine-tuning config of one round: every shared setting, with the round's ``split_file``."""
        shared = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(ClsFinetuneConfig)}
        return ClsFinetuneConfig(**{**shared, "split_file": str(split_file)})


def run_kfold(config: KfoldConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
              callbacks: list[L.Callback] | None = None) -> dict[str, float]:
    """Train and test every round, then write the summary; returns the summary metrics.

    A finished run (with ``metrics.json``) is refused unless ``overwrite``; ``callbacks`` go to every fold's trainer.
    """
    config.validate()
    with rank_zero_first(config.accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        index = load_index(config.data, task="cls", group_by=config.group_by)
        assert_valid(index)
        folds = fold_assignment(index, run.path / "folds.csv", resuming, config.fold_seed, config.folds,
                                config.fold_file)
        weights = read_weights_file(config.weights) if config.pretrained else None  # read once, for every fold
        create_backbone(  # before any write: bad model options leave no run behind
            config.model, img_size=config.img_size, weights=weights, drop_path_rate=config.drop_path,
            **config.model_args,
        )
        if zero:
            save_config(config, run.config)
            save_folds(index, folds, run.path / "folds.csv")
    num_folds = max(folds) + 1
    echo(f"{num_folds}-fold cross-validation of {config.model} on {config.data}: {len(index.samples)} images, "
         f"groups by {index.group_column or 'none (each image its own group)'}")
    if index.grouping_hint:
        echo(f"warning: {index.grouping_hint}")
    fold_runs = [_run_fold(config, run, index, folds, fold, weights, echo, callbacks) for fold in range(num_folds)]
    if not zero:  # every rank trained each fold; rank 0 alone evaluated them and writes the summary
        return {}
    return _summarise(config, run, index, fold_runs, echo)


def _run_fold(config: KfoldConfig, run: RunFolder, index: DatasetIndex, folds: list[int], fold: int,
              weights: WeightsFile | None, echo: Echo, callbacks: list[L.Callback] | None) -> RunFolder:
    """Fine-tune round ``fold`` into ``RUN/fold_<fold>`` (from ``weights``, ``config.weights`` as read) unless it is
    finished; resumes an interrupted one."""
    fold_run = RunFolder(run.path / f"fold_{fold}")
    if fold_run.is_finished:
        echo(f"fold {fold}: finished earlier, kept ({fold_run.path})")
        return fold_run
    split_file = run.path.resolve() / "splits" / f"fold_{fold}.csv"
    if is_rank_zero():  # the other ranks read it once rank 0 has prepared the fold's run
        save_split(fold_split(index.samples, folds, fold, seed=config.fold_seed), split_file)
    echo(f"round {fold + 1} of {max(folds) + 1}: testing on fold {fold}")
    finetune_classifier(config.fold_config(split_file), fold_run.path, echo=echo, callbacks=callbacks, weights=weights)
    return fold_run


def _summarise(config: KfoldConfig, run: RunFolder, index: DatasetIndex, fold_runs: list[RunFolder],
               echo: Echo) -> dict[str, float]:
    """Write the summary files and Grad-CAM figures, then ``metrics.json`` (last: it marks the run finished)."""
    classes = index.classes
    fold_metrics = [json.loads(fold_run.metrics.read_text(encoding="utf-8")) for fold_run in fold_runs]
    matrices = [read_confusion_csv(fold_run.path / "confusion_matrix_test.csv", classes) for fold_run in fold_runs]
    fold_splits = [load_split(fold_run.split, index) for fold_run in fold_runs]
    summed = sum(matrices[1:], matrices[0])
    summary = summarise_folds(fold_metrics, summed, classes)
    write_confusion_csv(summed, classes, run.path / "confusion_matrix_summed.csv")
    plot_confusion_matrix(summed, classes, run.path / "confusion_matrix_summed.png",
                          f"{len(fold_runs)} test folds ({int(summed.sum())} images)")
    write_folds_summary(run.path / "folds_summary.csv", fold_metrics, fold_splits)
    optimistic = [best_test_epoch(fold_run.path / TEST_PER_EPOCH) for fold_run in fold_runs]
    if config.report_best_test_epoch and all(optimistic):
        best_summed = sum((matrix for _, matrix in optimistic[1:]), optimistic[0][1])
        write_confusion_csv(best_summed, classes, run.path / "confusion_matrix_summed_best_test_epoch.csv")
        summary.update({f"optimistic/{key}": value for key, value in confusion_metrics(best_summed, classes).items()})
    if config.gradcam_per_class:
        for fold, (fold_run, splits) in enumerate(zip(fold_runs, fold_splits, strict=True)):
            _write_gradcams(fold_run, splits["test"], config.gradcam_per_class, run.path / "gradcam", fold)
    atomic_write_json(run.metrics, summary)
    echo(format_table(summary, [len(splits["test"]) for splits in fold_splits]))
    if "optimistic/accuracy" in summary:
        echo(f"optimistic (USCL's selection: each fold's epoch with the best TEST accuracy, summed): accuracy "
             f"{summary['optimistic/accuracy']:.4f}, macro F1 {summary['optimistic/macro_f1']:.4f}; compare with "
             "published USCL/ACLUS figures only, never as a result")
    echo(f"results in {run.path}: metrics.json, folds_summary.csv, confusion_matrix_summed.png, fold_*/"
         + (", gradcam/" if config.gradcam_per_class else ""))
    return summary


def _write_gradcams(fold_run: RunFolder, test: list[Sample], per_class: int, out_dir: Path, fold: int) -> None:
    """Grad-CAM figures of the first ``per_class`` test images of each class, from the fold's selected model."""
    loaded = load_run_model(fold_run.path)
    chosen = first_per_class(test, len(loaded.classes), per_class)
    write_gradcam_examples(loaded.model, chosen, loaded.classes, loaded.img_size, out_dir, f"fold_{fold}")
