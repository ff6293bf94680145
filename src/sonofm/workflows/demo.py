"""``sonofm demo``: MIM-pretrain a tiny USFM ViT, fine-tune classification and segmentation from it and from scratch,
and write one self-contained ``report.html``.

Layout of ``OUT``: ``phantom/`` (the built-in data, unless ``data`` is given), one run folder per stage
(:data:`STAGES`), ``timings.json`` (seconds per stage, kept across reruns), ``report_figures/`` (figures the runs do
not draw themselves) and ``report.html``. A finished stage is reused on a rerun; ``overwrite`` redoes every stage.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sonofm.atomic import atomic_write_json
from sonofm.data.phantom import write_phantom_dataset
from sonofm.engine.optim import OptimConfig
from sonofm.engine.precision import resolve_precision
from sonofm.engine.trainer import Echo
from sonofm.errors import SonofmError
from sonofm.methods.mim.model import MimConfig
from sonofm.report import Figure, Section, Table, write_report
from sonofm.report.figures import plot_training_curves
from sonofm.runs.run_folder import RunFolder
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier
from sonofm.tasks.mim.pretrain import FIGURE_DIR, MimPretrainConfig, pretrain_mim
from sonofm.tasks.seg.finetune import SegFinetuneConfig, finetune_segmenter

STAGES = ("pretrain_mim", "cls_pretrained", "cls_scratch", "seg_pretrained", "seg_scratch")
CLS_REPORTED = ("test/accuracy", "test/balanced_accuracy", "test/macro_f1", "test/auroc")
SEG_REPORTED = ("test/dice", "test/iou", "test/hd95")
REPORT_NAME = "report.html"


@dataclass
class DemoConfig:
    """The demo's settings: data, the shared model and image size, and each stage's budget.

    ``data`` is a classification dataset, or a folder holding ``cls/`` and ``seg/`` datasets; None writes the
    phantom set (``phantom_per_class`` images per class, ``phantom_frames_per_subject`` frames of each simulated
    subject) into ``OUT/phantom``; one frame per subject puts 64 subjects in the test split, so one misjudged subject
    moves balanced accuracy by 0.016. ``seg_data`` is a segmentation dataset (when ``data`` has no ``seg/``); without
    one the segmentation stages are skipped. ``img_size`` = 96 gives the patch-16 ViT 6 x 6 tokens (at 64 px, 4 x 4,
    phantom lesions straddle patch borders). ``num_workers`` = 0 loads images in the training process: on a small
    CPU budget, starting a worker process every epoch costs more than it saves. Classification fine-tuning uses peak
    LR ``cls_lr``, no drop path, and layer decay ``cls_layer_decay`` from the pretrained weights (none from scratch).
    README "The demo report" gives the runs behind each of these choices.
    """

    data: str | None = None
    seg_data: str | None = None
    model: str = "usfm_vit_tiny_patch16"
    img_size: int = 96
    phantom_per_class: int = 80
    phantom_frames_per_subject: int = 1
    seed: int = 0
    progress: bool = True
    num_workers: int = 0
    pretrain_epochs: int = 100
    cls_epochs: int = 100
    cls_lr: float = 1e-3
    cls_layer_decay: float = 0.75
    seg_epochs: int = 20
    seg_head: str = "upernet"
    seg_channels: int = 64
    batch_size: int = 32


def quick_config(config: DemoConfig) -> DemoConfig:
    """``config`` cut to a tiny budget (the test's ``--quick``): under a minute on 2 CPU cores."""
    return dataclasses.replace(config, img_size=64, phantom_per_class=12, pretrain_epochs=2, cls_epochs=2,
                               seg_epochs=2)


@dataclass
class _Stage:
    """What the report needs about one finished stage."""

    name: str
    run: RunFolder
    metrics: dict[str, float]
    seconds: float | None
    reused: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def run_demo(config: DemoConfig, out: str | Path, overwrite: bool = False, echo: Echo = print) -> Path:
    """Run (or reuse) every stage, then write ``OUT/report.html``; returns its path."""
    out = Path(out)
    started = time.perf_counter()
    cls_data, seg_data = _resolve_data(config, out, echo)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() and not overwrite else {}
    stages: dict[str, _Stage] = {}
    plan = [name for name in STAGES if seg_data or not name.startswith("seg")]

    def run_stage(name: str, train) -> None:
        folder = RunFolder(out / name)
        number = f"[{len(stages) + 1}/{len(plan)}]"
        if folder.is_finished and not overwrite:
            echo(f"{number} {name}: already finished, reusing {folder.path}")
            stages[name] = _Stage(name, folder, _read_metrics(folder), timings.get(name), reused=True)
            return
        echo(f"{number} {name} ...")
        begin = time.perf_counter()
        metrics = train(folder.path)
        timings[name] = time.perf_counter() - begin
        atomic_write_json(timings_path, timings)
        stages[name] = _Stage(name, folder, metrics, timings[name])

    pretrain = MimPretrainConfig(
        data=[str(cls_data)] + ([str(seg_data)] if seg_data else []), model=config.model, img_size=config.img_size,
        epochs=config.pretrain_epochs, batch_size=config.batch_size, seed=config.seed, figure_every=0,
        checkpoint_every=0, drop_path=0.0, progress=config.progress, num_workers=config.num_workers,
        mim=MimConfig(mask_patch=16 if config.img_size < 128 else 32),
    )
    run_stage("pretrain_mim", lambda path: pretrain_mim(pretrain, path, overwrite=overwrite, echo=echo))
    weights = str(stages["pretrain_mim"].run.model)
    for init in ("pretrained", "scratch"):
        cls = ClsFinetuneConfig(
            data=str(cls_data), model=config.model, img_size=config.img_size, epochs=config.cls_epochs,
            batch_size=config.batch_size, seed=config.seed, weights=weights if init == "pretrained" else None,
            progress=config.progress, num_workers=config.num_workers, drop_path=0.0,
            optim=OptimConfig(lr=config.cls_lr, layer_decay=config.cls_layer_decay if init == "pretrained" else None),
        )
        run_stage(f"cls_{init}", lambda path, c=cls: finetune_classifier(c, path, overwrite=overwrite, echo=echo))
    if seg_data:
        for init in ("pretrained", "scratch"):
            seg = SegFinetuneConfig(
                data=str(seg_data), model=config.model, img_size=config.img_size, epochs=config.seg_epochs,
                batch_size=config.batch_size, seed=config.seed, weights=weights if init == "pretrained" else None,
                head=config.seg_head, head_args={"channels": config.seg_channels}, progress=config.progress,
                num_workers=config.num_workers,
            )
            run_stage(f"seg_{init}", lambda path, c=seg: finetune_segmenter(c, path, overwrite=overwrite, echo=echo))
    for stage in stages.values():
        stage.counts = _split_counts(stage.run)
    elapsed = time.perf_counter() - started
    report = build_report(config, out, cls_data, seg_data, stages, elapsed)
    echo(format_summary(stages))
    echo(f"report: {report}")
    return report


def _resolve_data(config: DemoConfig, out: Path, echo: Echo) -> tuple[Path, Path | None]:
    """The classification dataset and the segmentation dataset (or None)."""
    if config.data is None:
        echo(f"generating the phantom data set in {out / 'phantom'} ...")
        root = write_phantom_dataset(out / "phantom", n_per_class=config.phantom_per_class, size=config.img_size,
                                     seed=config.seed, frames_per_group=config.phantom_frames_per_subject)
        return root / "cls", root / "seg"
    data = Path(config.data)
    if not data.is_dir():
        raise SonofmError(f"--data is not a folder: {data}")
    seg = Path(config.seg_data) if config.seg_data else None
    if (data / "cls").is_dir():
        seg = seg or ((data / "seg") if (data / "seg").is_dir() else None)
        data = data / "cls"
    if seg is not None and not seg.is_dir():
        raise SonofmError(f"--seg-data is not a folder: {seg}")
    return data, seg


def _read_metrics(run: RunFolder) -> dict[str, float]:
    try:
        return json.loads(run.metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SonofmError(f"unreadable metrics of a finished stage: {run.metrics} ({exc})") from None


def _split_counts(run: RunFolder) -> dict[str, int]:
    """Images per split from the run's ``split.csv`` (empty for pretraining: see ``images.txt``)."""
    if run.split.is_file():
        with run.split.open(newline="", encoding="utf-8") as handle:
            counts: dict[str, int] = {}
            for row in csv.DictReader(handle):
                counts[row["split"]] = counts.get(row["split"], 0) + 1
            return counts
    listing = run.path / "images.txt"
    if listing.is_file():
        return {"unlabeled": sum(1 for line in listing.read_text(encoding="utf-8").splitlines() if line)}
    return {}


def _metric_row(label: str, metrics: dict[str, float], keys: tuple[str, ...]) -> list[str | float]:
    return [label, *(float(metrics[key]) if key in metrics else "n/a" for key in keys)]


def format_summary(stages: dict[str, _Stage]) -> str:
    """A short plain-text table of the test metrics, pretrained vs scratch."""
    lines = []
    for task, keys in (("cls", CLS_REPORTED), ("seg", SEG_REPORTED)):
        if f"{task}_pretrained" not in stages:
            continue
        names = [key.removeprefix("test/") for key in keys]
        lines.append(f"{task + ' (test)':12s}" + "".join(f"{name:>18s}" for name in names))
        for init in ("pretrained", "scratch"):
            metrics = stages[f"{task}_{init}"].metrics
            lines.append(f"{init:12s}" + "".join(f"{metrics.get(key, float('nan')):18.4f}" for key in keys))
    return "\n".join(lines)


def build_report(config: DemoConfig, out: Path, cls_data: Path, seg_data: Path | None, stages: dict[str, _Stage],
                 elapsed: float) -> Path:
    """Write ``OUT/report.html`` from the finished stages' folders."""
    figures_dir = out / "report_figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    sections = [_summary_section(config, cls_data, seg_data, stages, elapsed)]
    sections.append(_comparison_section(
        "Classification", f"{config.model} fine-tuned (all layers) from the MIM encoder and from random "
        "initialisation; the best epoch by validation balanced accuracy is tested on held-out groups.",
        "cls", CLS_REPORTED, stages, (("confusion_matrix_test.png", "confusion matrix"),
                                      ("training_curves.png", "training curves"))))
    if seg_data:
        sections.append(_comparison_section(
            "Segmentation", f"{config.model} + {config.seg_head} head; Dice and IoU are means over the foreground "
            "classes, HD95 in pixels at the original image size. Overlays: validation images, ground truth and "
            "prediction.", "seg", SEG_REPORTED, stages, (("examples_val.png", "segmentation overlays"),
                                                         ("training_curves.png", "training curves"))))
    pretrain = stages["pretrain_mim"].run
    curves = figures_dir / "pretrain_loss.png"
    with pretrain.log.open(newline="", encoding="utf-8") as handle, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No artists with labels")  # no metric panel for pretraining
        plot_training_curves(list(csv.DictReader(handle)), curves, ())
    metrics = stages["pretrain_mim"].metrics
    sections.append(Section(
        "MIM pretraining",
        ["USFM-style spatial-frequency masked image modelling on the images without their labels. Each figure row: "
         "original, encoder input (band-stop filtered, blocks hidden), reconstruction."],
        [Table(["metric", "value"], [[key, float(value)] for key, value in sorted(metrics.items())])],
        [Figure(pretrain.path / FIGURE_DIR / "final.png", "reconstructions at the end of pretraining"),
         Figure(curves, "pretraining loss per epoch")],
    ))
    return write_report(out / REPORT_NAME, "sonofm demo report", sections)


def _comparison_section(title: str, text: str, task: str, keys: tuple[str, ...], stages: dict[str, _Stage],
                        figures: tuple[tuple[str, str], ...]) -> Section:
    """A task's test metrics for both inits, then each ``(file, caption)`` figure of both inits' run folders."""
    inits = ("pretrained", "scratch")
    rows = [_metric_row(init, stages[f"{task}_{init}"].metrics, keys) for init in inits]
    return Section(
        title, [text], [Table(["init", *(key.removeprefix("test/") for key in keys)], rows, "test split")],
        [Figure(stages[f"{task}_{init}"].run.path / file, f"{caption}, {init}") for file, caption in figures
         for init in inits],
    )


def _summary_section(config: DemoConfig, cls_data: Path, seg_data: Path | None, stages: dict[str, _Stage],
                     elapsed: float) -> Section:
    data = ("the built-in phantom set" if config.data is None
            else f"{cls_data}" + (f" and {seg_data}" if seg_data else ""))
    rows = []
    for name, stage in stages.items():
        counts = ", ".join(f"{split} {count}" for split, count in stage.counts.items())
        took = "n/a" if stage.seconds is None else f"{stage.seconds:.0f} s" + (" (earlier run)" if stage.reused else "")
        rows.append([name, counts, took])
    machine = (f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPU cores, "
               f"torch {torch.__version__}, "
               f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}, "
               f"precision {resolve_precision('auto')}")
    return Section(
        "Summary",
        [f"Data: {data}. Model: {config.model} at {config.img_size} px, seed {config.seed}. Stages: MIM pretraining "
         f"({config.pretrain_epochs} epochs), classification fine-tuning ({config.cls_epochs} epochs, peak LR "
         f"{config.cls_lr:g}, layer decay {config.cls_layer_decay:g} from the pretrained encoder)"
         + (f" and segmentation fine-tuning ({config.seg_epochs} epochs)" if seg_data else "")
         + ", each from the pretrained encoder and from scratch.",
         f"This invocation took {elapsed:.0f} s. Machine: {machine}."],
        [Table(["stage", "images", "time"], rows, "stages (run folders under the output folder)")],
    )
