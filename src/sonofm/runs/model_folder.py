"""The shareable model folder (``sonofm export --format folder``): its files, its ``config.json`` and loading it.

Layout::

    DIR/model.safetensors   the run's model file, unchanged (weights + the metadata that rebuilds the model)
    DIR/config.json         that metadata as JSON (task, model, img_size, classes, head...), plus ``library_name``,
                            ``sonofm_version``, ``preprocessing`` (input size, normalisation) and ``training`` (the
                            run's resolved config.yaml)
    DIR/README.md           the model card (Hugging Face conventions: YAML front matter, then Markdown)

Loading reads the model's description from ``config.json`` and the weights from ``model.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sonofm import __version__
from sonofm.errors import SonofmError, first_line
from sonofm.runs.run_model import RunModel, build_run_model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
LIBRARY_NAME = "sonofm"
FOLDER_ENTRIES = ("library_name", "sonofm_version", "preprocessing", "training")
"""Entries of ``config.json`` that describe the folder, not the model (the others are the model file's metadata)."""


def folder_config(metadata: dict[str, Any], preprocessing: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` of a model folder: the model file's ``metadata`` with the folder's own entries."""
    clashes = sorted(set(metadata) & set(FOLDER_ENTRIES))
    if clashes:
        raise SonofmError(f"model metadata entries {clashes} clash with the model folder's own entries")
    return {"library_name": LIBRARY_NAME, "sonofm_version": __version__, **metadata,
            "preprocessing": preprocessing, "training": training}


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding a ``config.json`` and a ``model.safetensors``."""
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_folder_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a model folder; SonofmError naming it when it is unreadable or not sonofm's."""
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SonofmError(f"cannot read {path}: {first_line(error)}") from None
    if not isinstance(config, dict) or config.get("library_name") != LIBRARY_NAME:
        raise SonofmError(f"{path} is not the config of a sonofm model folder (no \"library_name\": \"sonofm\"); "
                          "write one with `sonofm export --format folder`")
    return config


def model_metadata(config: dict[str, Any]) -> dict[str, Any]:
    """The model file's metadata that a folder's ``config.json`` carries (its entries less the folder's own)."""
    return {key: value for key, value in config.items() if key not in FOLDER_ENTRIES}


def load_model_folder(folder: str | Path) -> RunModel:
    """Rebuild the model of an exported folder: described by ``config.json``, weights from ``model.safetensors``."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    return build_run_model(model_metadata(read_folder_config(folder)), folder / WEIGHTS_FILE, str(config_path))
