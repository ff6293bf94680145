"""Export a finished run as a shareable model folder: ``model.safetensors``, ``config.json`` and a model card
(layout in :mod:`sonofm.runs.model_folder`). Nothing is uploaded: the folder is ready for a model hub as it is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from sonofm.atomic import atomic_write, atomic_write_json, atomic_write_text
from sonofm.errors import SonofmError
from sonofm.export.model_card import model_card
from sonofm.export.parity import check_parity
from sonofm.export.preprocessing import InferenceWrapper, preprocessing_of
from sonofm.export.run_facts import read_run_facts
from sonofm.runs.model_file import read_model_metadata
from sonofm.runs.model_folder import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    folder_config,
    is_model_folder,
    load_model_folder,
    read_folder_config,
)
from sonofm.runs.run_folder import RunFolder
from sonofm.runs.run_model import RunModel, load_run_model

DEFAULT_LICENCE = "other"
SAM_MESSAGE = ("run {run} is an A-SAM run: its model.safetensors holds only the weights it changed (LoRA or adapters, "
               "the mask decoder, the prompter) on top of a base SAM checkpoint, so it is not a self-contained model; "
               "share the run folder together with that checkpoint instead")


def export_model_folder(run_path: str | Path, out: str | Path, overwrite: bool = False,
                        licence: str = DEFAULT_LICENCE) -> Path:
    """Write the model folder ``out`` of the finished classification, segmentation or enhancement run ``run_path``;
    the model card declares the Hugging Face licence id ``licence``. The folder is assembled beside ``out`` and moved
    into place once its model has been reloaded and checked against the run's, so a failure leaves ``out`` as it was.
    An existing non-empty ``out`` is refused unless ``overwrite`` (and then only a sonofm model folder is replaced).
    """
    run, out = RunFolder(Path(run_path)), Path(out)
    run.require_finished()
    if read_model_metadata(run.model).get("task") == "sam":
        raise SonofmError(SAM_MESSAGE.format(run=run.path))
    facts = read_run_facts(run)
    _check_out(out, overwrite)
    loaded = load_run_model(run.path)
    preprocessing = {key: value for key, value in preprocessing_of(loaded).items()
                     if key not in ("task", "classes", "model")}
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        atomic_write(staging / WEIGHTS_FILE, lambda tmp: shutil.copyfile(run.model, tmp))
        atomic_write_json(staging / CONFIG_FILE, folder_config(loaded.metadata, preprocessing, facts.config))
        atomic_write_text(staging / CARD_FILE, model_card(facts, loaded.metadata, out.name, licence))
        _check_reloads(loaded, staging, out)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, or a non-empty folder without ``overwrite`` or that is not a model folder."""
    if out.exists() and not out.is_dir():
        raise SonofmError(f"--out {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise SonofmError(f"--out {out} is a non-empty folder; pass --overwrite to replace it, or choose another --out")
    if not _is_sonofm_model_folder(out):
        raise SonofmError(f"refusing to overwrite {out}: it is not a sonofm model folder")


def _is_sonofm_model_folder(path: Path) -> bool:
    """Whether ``path`` holds a model file and a sonofm ``config.json`` (not another library's)."""
    try:
        return is_model_folder(path) and bool(read_folder_config(path))
    except SonofmError:
        return False


def _check_reloads(loaded: RunModel, staging: Path, out: Path) -> None:
    """Load the written folder back and run the parity batch through it and the run's model (prints the max abs
    difference; SonofmError over the tolerance)."""
    reloaded = InferenceWrapper(load_model_folder(staging).model, loaded.task).eval()

    def forward(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return reloaded(images)

    check_parity(InferenceWrapper(loaded.model, loaded.task).eval(), forward, loaded.img_size, str(out))
