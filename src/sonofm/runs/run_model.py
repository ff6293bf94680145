"""Rebuild a finished run's model from its ``model.safetensors`` and ``config.yaml``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sonofm.errors import SonofmError, first_line
from sonofm.models import create_backbone
from sonofm.models.classifier import ImageClassifier
from sonofm.models.enhancer import ImageEnhancer
from sonofm.models.segmenter import Segmenter
from sonofm.runs.model_file import load_model_state, read_model_metadata
from sonofm.runs.run_folder import RunFolder

EntryType = type | tuple[type, ...]
TASK_ENTRIES: dict[str, EntryType] = {"model": str, "img_size": int, "classes": list}
SEG_ENTRIES: dict[str, EntryType] = {"head": str, "ignore_index": int, "aux_weight": (int, float)}
OPTIONAL_ENTRIES: dict[str, EntryType] = {"model_args": dict, "head_args": dict, "refine_channels": int,
                                          "classifier_head": str}


@dataclass
class RunModel:
    """A trained model in eval mode with what is needed to feed it."""

    model: nn.Module
    task: str
    img_size: int
    classes: list[str]
    metadata: dict[str, Any]


def load_run_model(path: str | Path) -> RunModel:
    """Load a finished run's ``model.safetensors`` (strict: every key must match the rebuilt model); task ``cls``,
    ``seg`` or ``enhance``."""
    run = RunFolder(Path(path))
    run.require_finished()
    if read_model_metadata(run.model).get("task") == "sam":
        raise SonofmError(f"run {run.path} holds a 'sam' model (an A-SAM run): measure it with `sonofm sam evaluate "
                          f"--run {run.path}`, or map anatomy with `sonofm sam automask`")
    return load_model_file(run.model)


def load_model_file(model_file: str | Path) -> RunModel:
    """Rebuild the model of a ``model.safetensors`` written by a sonofm run from its metadata alone (no run folder
    needed); task ``cls``, ``seg`` or ``enhance``."""
    model_file = Path(model_file)
    return build_run_model(read_model_metadata(model_file), model_file, f"model file {model_file}")


def build_run_model(metadata: dict[str, Any], model_file: Path, source: str) -> RunModel:
    """The model that ``metadata`` (a model file's, or an exported folder's ``config.json``) describes, with the
    weights of ``model_file`` (strict: every key must match); ``source`` names the description in errors."""
    _require_entries(metadata, source, {"task": str})
    task = metadata["task"]
    if task == "sam":
        raise SonofmError(f"{model_file} holds a 'sam' model (an A-SAM run): measure it with `sonofm sam evaluate`, "
                          "or map anatomy with `sonofm sam automask`")
    if task not in ("cls", "seg", "enhance"):
        raise SonofmError(f"{model_file} holds a {task!r} model; this command supports classification, "
                          "segmentation and enhancement runs")
    _require_entries(metadata, source, TASK_ENTRIES | (SEG_ENTRIES if task == "seg" else {}), OPTIONAL_ENTRIES)
    backbone = create_backbone(metadata["model"], img_size=int(metadata["img_size"]), **metadata.get("model_args", {}))
    num_classes = len(metadata["classes"])
    if task == "cls":
        model: nn.Module = ImageClassifier(backbone, num_classes=num_classes,
                                           head=metadata.get("classifier_head", "usfm"))
    elif task == "enhance":
        model = ImageEnhancer(backbone, refine_channels=int(metadata.get("refine_channels", 32)))
    else:
        model = Segmenter(backbone, num_classes, head=metadata["head"], ignore_index=int(metadata["ignore_index"]),
                          aux_weight=float(metadata["aux_weight"]), **metadata.get("head_args", {}))
    try:
        result = model.load_state_dict(load_model_state(model_file), strict=False)
    except RuntimeError as error:  # shapes that differ (e.g. classes edited in the description) are not skipped
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), first_line(error))
        raise SonofmError(f"{model_file} does not match the model {source} describes: {detail}") from None
    if result.missing_keys or result.unexpected_keys:
        raise SonofmError(
            f"{model_file} does not match model {metadata['model']}: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return RunModel(model.eval(), task, int(metadata["img_size"]), list(metadata["classes"]), metadata)


def _require_entries(metadata: dict[str, Any], source: str, required: dict[str, EntryType],
                     optional: dict[str, EntryType] | None = None) -> None:
    """SonofmError naming ``source`` and the key when a ``required`` entry is missing, or an entry present is not of
    its type (metadata written by another tool, or edited by hand)."""
    for key, kind in (required | (optional or {})).items():
        if key not in metadata:
            if key in required:
                raise SonofmError(f"cannot read {source}: its metadata has no '{key}' entry "
                                  "(it was not written by a sonofm fine-tuning run, or was edited)")
        elif not isinstance(metadata[key], kind) or isinstance(metadata[key], bool):
            expected = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise SonofmError(f"cannot read {source}: its metadata entry '{key}' is "
                              f"{json.dumps(metadata[key])[:40]}, expected {expected}")
