"""The served models: each loaded once from a run folder, an exported model folder or a model file, behind its own
lock (one request at a time per model; callers run it in a worker thread so the event loop stays free)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonofm.api import load
from sonofm.errors import SonofmError
from sonofm.runs.model_file import read_model_metadata
from sonofm.runs.run_folder import RunFolder
from sonofm.serve.classify import ClassifierRunner
from sonofm.serve.enhance import EnhancerRunner
from sonofm.serve.http import Box, Click
from sonofm.serve.segment import SegmenterRunner
from sonofm.serve.sessions import Upload

if TYPE_CHECKING:
    from sonofm.serve.asam import SamRunner

    Runner = ClassifierRunner | SegmenterRunner | EnhancerRunner | SamRunner

RUNNERS = {"cls": ClassifierRunner, "seg": SegmenterRunner, "enhance": EnhancerRunner}


class ServedModel:
    """A named model and what the page can ask of it; every model call holds the model's lock."""

    def __init__(self, name: str, runner: Runner) -> None:
        self.name = name
        self.runner = runner
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """What the page's model menu lists (``automatic``: an A-SAM with a class prompter)."""
        return {"name": self.name, "task": self.runner.task, "classes": self.runner.classes,
                "img_size": self.runner.img_size, "automatic": self.runner.task == "sam" and self.runner.automatic}

    def predict(self, upload: Upload, frame: int) -> dict[str, Any]:
        """The model's output on one frame: probabilities, a mask, a restored image, or an A-SAM's anatomy map."""
        image = upload.frame(frame)
        spacing = upload.file.pixel_size_mm
        with self.lock:
            start = time.perf_counter()
            if self.runner.task == "sam":
                embedding, _ = self._embedding(upload, frame)
                result = self.runner.anatomy(embedding, (upload.width, upload.height), spacing)
            else:
                result = self.runner.predict(image, spacing)
            return {**result, "model": self.name, "seconds": time.perf_counter() - start}

    def embed(self, upload: Upload, frame: int) -> dict[str, Any]:
        """Compute (or find) an A-SAM's embedding of one frame."""
        with self.lock:
            start = time.perf_counter()
            _, cached = self._embedding(upload, frame)
            return {"model": self.name, "cached": cached, "seconds": time.perf_counter() - start}

    def prompt(self, upload: Upload, frame: int, clicks: list[Click], box: Box | None) -> dict[str, Any]:
        """An A-SAM's mask for clicks and a box on one frame; the frame's embedding is computed on first use only."""
        _require_inside(clicks, box, upload)
        with self.lock:
            start = time.perf_counter()
            embedding, cached = self._embedding(upload, frame)
            result = self.runner.prompt(embedding, (upload.width, upload.height), clicks, box,
                                        upload.file.pixel_size_mm)
            return {**result, "model": self.name, "embedding_cached": cached,
                    "seconds": time.perf_counter() - start}

    def _embedding(self, upload: Upload, frame: int) -> tuple[Any, bool]:
        """An A-SAM's image embedding of the frame, computed on first use; SonofmError for another model."""
        if self.runner.task != "sam":
            raise SonofmError(f"model {self.name} is a {self.runner.task} model; clicks and boxes need an A-SAM model")
        return upload.result((self.name, "embedding", frame), lambda: self.runner.embed(upload.frame(frame)))


def _require_inside(clicks: list[Click], box: Box | None, upload: Upload) -> None:
    corners = [(x, y) for x, y, _ in clicks] + ([box[:2], box[2:]] if box is not None else [])
    for x, y in corners:
        if not (0 <= x < upload.width and 0 <= y < upload.height):
            raise SonofmError(f"({x:g}, {y:g}) is outside the {upload.width}x{upload.height} image")


def load_served_models(paths: Sequence[str | Path], precision: str) -> list[ServedModel]:
    """One served model per path, named after its run folder, model folder or file (``-2``, ... when names repeat)."""
    served: list[ServedModel] = []
    for path in map(Path, paths):
        name = base = _model_name(path)
        number = 1
        while name in {model.name for model in served}:
            number += 1
            name = f"{base}-{number}"
        served.append(ServedModel(name, _runner(path, precision)))
    return served


def _model_name(path: Path) -> str:
    return (path.parent.name or path.stem) if path.name == "model.safetensors" else (path.stem or "model")


def _runner(path: Path, precision: str) -> Runner:
    """An A-SAM's runner for an A-SAM run folder or model file, else the runner of what ``sonofm.load`` gives."""
    model_file = path if path.is_file() else path / "model.safetensors"
    if model_file.is_file() and read_model_metadata(model_file).get("task") == "sam":
        from sonofm.sam.adapted import load_adapted_sam  # the `sam` extra, needed by A-SAM models only
        from sonofm.serve.asam import SamRunner

        run = RunFolder(path)
        if path.is_dir() and run.config.is_file():
            run.require_finished()
        return SamRunner(load_adapted_sam(model_file), precision)
    loaded = load(path)
    return RUNNERS[loaded.task](loaded, precision)
