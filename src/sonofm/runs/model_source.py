"""One entry point for every form a trained model comes in: a run folder, an exported model folder, a model file."""

from __future__ import annotations

from pathlib import Path

from sonofm.errors import SonofmError
from sonofm.runs.model_folder import WEIGHTS_FILE, is_model_folder, load_model_folder
from sonofm.runs.run_folder import RunFolder
from sonofm.runs.run_model import RunModel, load_model_file, load_run_model


def load_model(path: str | Path) -> RunModel:
    """The model of a finished run folder, of a folder written by ``sonofm export --format folder``, or of a lone
    ``model.safetensors`` written by a sonofm run (also one in a folder of its own)."""
    path = Path(path)
    if path.is_file():
        return load_model_file(path)
    if RunFolder(path).config.is_file():
        return load_run_model(path)
    if is_model_folder(path):
        return load_model_folder(path)
    if (path / WEIGHTS_FILE).is_file():
        return load_model_file(path / WEIGHTS_FILE)
    raise SonofmError(f"{path} is neither a sonofm run folder nor a model.safetensors written by sonofm, nor a "
                      "model folder written by `sonofm export --format folder`")
