"""``sonofm finetune cls``: fine-tune a backbone for image classification in a resumable run folder."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from sonofm.atomic import atomic_write_json, atomic_write_text
from sonofm.data.datasets import ClassificationDataset
from sonofm.data.layouts import load_index
from sonofm.data.records import DatasetIndex
from sonofm.data.transforms import AUGMENTATIONS
from sonofm.data.validate import assert_valid
from sonofm.engine.config import FinetuneConfig
from sonofm.engine.data import describe_start, load_or_make_splits, make_loader
from sonofm.engine.distributed import attach_run, rank_zero_first
from sonofm.engine.trainer import Echo, checkpoint_epoch, evaluation_trainer, fit_selecting_best, write_training_curves
from sonofm.metrics.classification import classification_metrics, confusion_matrix
from sonofm.models import create_backbone
from sonofm.models.classifier import HEADS, ImageClassifier
from sonofm.models.state_dict_file import WeightsFile
from sonofm.report.confusion_table import write_confusion_csv
from sonofm.report.figures import plot_confusion_matrix
from sonofm.runs.config import save_config
from sonofm.runs.model_file import save_model
from sonofm.runs.run_folder import RunFolder, prepare_run
from sonofm.tasks.cls.epoch_test_scores import TEST_PER_EPOCH, EpochTestScores, best_test_epoch
from sonofm.tasks.cls.freezing import MODES
from sonofm.tasks.cls.module import ClassificationModule, inverse_frequency_weights

CURVE_METRICS = ("train/accuracy", "val/accuracy", "val/balanced_accuracy", "val/macro_f1")
PRETRAINED_HEAD_INIT_SCALE = 0.001


@dataclass
class ClsFinetuneConfig(FinetuneConfig):
    """Everything that defines a classification fine-tuning run (saved as the run's ``config.yaml``)."""

    mode: str = "full"
    label_smoothing: float = 0.1
    class_balance: str = "loss"
    head: str = "usfm"
    augment: str = "sonofm"
    report_best_test_epoch: bool = False

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (self.mode in MODES, f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}"),
            (self.head in HEADS, f"head must be one of {', '.join(HEADS)}, got {self.head!r}"),
            (self.augment in AUGMENTATIONS, f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}"),
            (self.class_balance in ("loss", "none"), f"class_balance must be loss or none, got {self.class_balance!r}"),
        ]

    @property
    def head_init_scale(self) -> float:
        """USFM's 0.001 when ``pretrained``; from scratch (1.0) a small head only prolongs the start-up plateau."""
        return PRETRAINED_HEAD_INIT_SCALE if self.pretrained else 1.0


def finetune_classifier(config: ClsFinetuneConfig, out: str | Path, overwrite: bool = False, echo: Echo = print,
                        callbacks: list[L.Callback] | None = None,
                        weights: WeightsFile | None = None) -> dict[str, float]:
    """Train, select the best epoch on validation balanced accuracy, test it, and write the run folder.

    Running again on an unfinished run folder resumes from ``checkpoints/last.ckpt``. ``callbacks`` are extra
    Lightning callbacks. ``weights``: ``config.weights`` already read (by a caller that fine-tunes it many times);
    None reads the file. Returns the final metrics.
    """
    assert weights is None or config.pretrained, "weights were handed over for a config without weights"
    config.validate()
    with rank_zero_first(config.accelerator) as zero:
        run, resuming = prepare_run(out, config, overwrite=overwrite) if zero else attach_run(out)
        index = load_index(config.data, task="cls", group_by=config.group_by)
        assert_valid(index)
        L.seed_everything(config.seed, workers=True, verbose=False)
        backbone = create_backbone(  # before any write: bad options leave no run behind
            config.model, img_size=config.img_size, weights=config.weights if weights is None else weights,
            drop_path_rate=config.drop_path, **config.model_args,
        )
        splits = load_or_make_splits(run, index, config, resuming)
        if zero:
            save_config(config, run.config)
    echo(describe_start(index, splits, run, resuming))
    if getattr(backbone, "load_report", None) is not None:
        echo(backbone.load_report.summary())
    model = ImageClassifier(backbone, num_classes=index.num_classes, head_init_scale=config.head_init_scale,
                            head=config.head)
    class_weights = None
    if config.class_balance == "loss":
        class_weights = inverse_frequency_weights([s.label for s in splits["train"]], index.num_classes)
    module = ClassificationModule(
        model, index.classes, config.resolved_optim(), mode=config.mode, label_smoothing=config.label_smoothing,
        class_weights=class_weights, seed=config.seed,
    )
    loaders = {
        name: make_loader(ClassificationDataset(samples, config.img_size, train=(name == "train"),
                                                augment=config.augment), config, train=(name == "train"))
        for name, samples in splits.items() if samples
    }
    if config.report_best_test_epoch and "test" in loaders:
        callbacks = [*(callbacks or []), EpochTestScores(loaders["test"], run.path / TEST_PER_EPOCH, index.num_classes)]
    trainer, best = fit_selecting_best(config, run, module, loaders, "val/balanced_accuracy", callbacks)
    if not trainer.is_global_zero:
        return {}
    return _finish(run, config, index, module, evaluation_trainer(trainer, config), loaders, best, echo)


def _finish(run: RunFolder, config: ClsFinetuneConfig, index: DatasetIndex, module: ClassificationModule,
            trainer: L.Trainer, loaders: dict[str, DataLoader], best: str | None, echo: Echo) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        if split not in loaders:
            continue
        run_eval = trainer.validate if split == "val" else trainer.test
        run_eval(module, loaders[split], ckpt_path=best, verbose=False)
        result = module.last_results[split]
        values = classification_metrics(result["probs"], result["labels"], index.classes)
        metrics.update({f"{split}/{key}": value for key, value in values.items()})
        matrix = confusion_matrix(result["probs"], result["labels"], index.num_classes)
        plot_confusion_matrix(matrix, index.classes, run.path / f"confusion_matrix_{split}.png", f"{split} ({len(result['labels'])} images)")
        write_confusion_csv(matrix, index.classes, run.path / f"confusion_matrix_{split}.csv")
        _write_per_class(run.path / f"per_class_{split}.csv", values, index.classes)
    metrics["best_epoch"] = checkpoint_epoch(best, config.epochs)
    optimistic = best_test_epoch(run.path / TEST_PER_EPOCH) if config.report_best_test_epoch else None
    if optimistic is not None:  # USCL's figure: the epoch chosen on the test split itself
        metrics["optimistic/best_test_epoch"] = float(optimistic[0])
        metrics["optimistic/test_accuracy"] = float(optimistic[1].diagonal().sum() / optimistic[1].sum())
    save_model(module.model, run.model, model_metadata(config, index))
    write_training_curves(run, CURVE_METRICS)
    atomic_write_json(run.metrics, metrics)
    echo(format_metrics(metrics, run.path))
    return metrics


def model_metadata(config: ClsFinetuneConfig, index: DatasetIndex) -> dict:
    return {
        "task": "cls", "model": config.model, "model_args": config.model_args, "img_size": config.img_size,
        "classes": index.classes, "classifier_head": config.head,
    }


def format_metrics(metrics: dict[str, float], run_path: Path) -> str:
    lines = [f"results in {run_path}:"]
    for key in ("val/balanced_accuracy", "test/accuracy", "test/balanced_accuracy", "test/macro_f1", "test/auroc"):
        if key in metrics:
            lines.append(f"  {key:24s} {metrics[key]:.4f}")
    lines.append("  metrics.json, confusion_matrix_test.png/.csv, per_class_test.csv, log.csv, model.safetensors")
    return "\n".join(lines)


def _write_per_class(path: Path, metrics: dict[str, float], classes: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["class", "precision", "recall"])
    for name in classes:
        writer.writerow([name, f"{metrics[f'precision/{name}']:.4f}", f"{metrics[f'recall/{name}']:.4f}"])
    atomic_write_text(path, buffer.getvalue())
