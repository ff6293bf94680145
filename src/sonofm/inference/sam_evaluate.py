"""``sonofm sam evaluate``: Dice, IoU and HD95 per class of a finished A-SAM run, prompted or automatic."""

from __future__ import annotations

from pathlib import Path

from sonofm.atomic import atomic_write_json
from sonofm.errors import SonofmError
from sonofm.inference.evaluate import select_samples
from sonofm.runs.config import load_config
from sonofm.runs.model_file import read_model_metadata
from sonofm.runs.run_folder import RunFolder
from sonofm.sam.adapted import load_adapted_sam
from sonofm.tasks.sam.evaluation import EVAL_MODES, evaluate_sam
from sonofm.tasks.sam.train import PrompterConfig, SamFinetuneConfig
from sonofm.tasks.seg.evaluation import pixel_size_column, write_per_image_csv


def evaluate_sam_run(run_path: str | Path, data: str | None = None, mode: str | None = None, split: str = "test",
                     progress: bool = True) -> tuple[dict[str, float], Path]:
    """Evaluate an A-SAM run; return ``(metrics, json_path)``.

    ``mode``: ``prompt`` (fixed clicks and boxes from the ground truth, one per class present; every prompt kind the
    run trained with) or ``auto`` (the prompter's anatomy map); default ``auto`` for prompter runs, else ``prompt``.
    Images are chosen as ``sonofm evaluate`` chooses them. Writes ``evaluate_<mode>_<tag>.json`` and per-image CSVs.
    """
    run = RunFolder(Path(run_path))
    run.require_finished()
    model = load_adapted_sam(run.model)
    mode = mode or ("auto" if model.prompter is not None else "prompt")
    if mode not in EVAL_MODES:
        raise SonofmError(f"--mode must be one of {', '.join(EVAL_MODES)}, got {mode!r}")
    if mode == "auto" and model.prompter is None:
        raise SonofmError(f"run {run.path} has no automatic prompter; use --mode prompt or a train-prompter run")
    config = load_config(PrompterConfig if model.prompter is not None else SamFinetuneConfig, run.config)
    samples, tag = select_samples(run, config, "sam", model.classes, data, split)
    if not samples:
        raise SonofmError(f"no images in split {split!r} of {data or config.data}")
    kinds = read_model_metadata(run.model)["prompts"]
    values, rows = evaluate_sam(model, samples, mode, kinds, config.ignore_index,
                                pixel_size_column(samples, config.pixel_size_column), config.precision, progress)
    for kind, kind_rows in rows.items():
        write_per_image_csv(kind_rows, run.path / f"per_image_{tag}_{kind}.csv")
    metrics = {f"{split}/{key}": value for key, value in values.items()}
    return metrics, atomic_write_json(run.path / f"evaluate_{mode}_{tag}.json", metrics)
