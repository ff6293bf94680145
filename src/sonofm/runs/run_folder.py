"""The run folder contract: what a run writes, and whether a command starts, resumes or refuses.

Layout::

    RUN/config.yaml          resolved config (written when the run starts)
    RUN/split.csv            the exact samples of every split (name,split,group,label)
    RUN/log.csv              one row per epoch
    RUN/checkpoints/last.ckpt, best.ckpt   resumable Lightning checkpoints
    RUN/logs/                experiment loggers' files (``--logger``: tensorboard/, csv/, wandb/, mlflow/)
    RUN/model.safetensors    the final model (weights + metadata)
    RUN/metrics.json         flat ``split/metric`` keys; its presence marks the run finished
    RUN/*.png                figures
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from sonofm.errors import SonofmError
from sonofm.models.state_dict_file import UnreadableWeightsError, load_torch_file
from sonofm.runs.config import config_to_dict

# Keys that may change between the first start and a resume without changing what is being trained.
RESUMABLE_KEYS = frozenset({"num_workers", "devices", "accelerator", "strategy", "num_nodes", "sync_batchnorm",
                            "progress", "loggers"})
CHECKPOINT_NAMES = ("last.ckpt", "best.ckpt")
START_OVER = "pass --overwrite to start the run over"
"""Checkpoints a resumed run reads back: Lightning resumes from ``last``, the final model comes from ``best``."""
CHECKPOINT_KEYS = ("state_dict", "epoch", "global_step", "loops", "optimizer_states")
"""Entries of a Lightning checkpoint that resuming reads."""


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def split(self) -> Path:
        return self.path / "split.csv"

    @property
    def log(self) -> Path:
        return self.path / "log.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def is_finished(self) -> bool:
        return self.metrics.is_file()

    def require_finished(self) -> None:
        """Raise SonofmError unless this is a finished run folder (for evaluate/predict)."""
        if not self.config.is_file():
            raise SonofmError(f"{self.path} is not a sonofm run folder (no config.yaml)")
        if not self.model.is_file():
            raise SonofmError(f"run {self.path} has no model.safetensors yet; finish it first (rerun its command)")


def prepare_run(path: str | Path, config: Any, overwrite: bool = False) -> tuple[RunFolder, bool]:
    """Decide start vs resume for ``config`` in ``path``.

    Returns ``(run, resuming)``; the folder itself is created by the first file written into it, so a command that
    fails on its input leaves nothing behind. A finished run is refused unless ``overwrite``; an unfinished run with a different
    config is refused (naming the first differing key) unless ``overwrite``, which deletes the folder first.
    """
    run = RunFolder(Path(path))
    if run.path.exists() and not run.path.is_dir():
        raise SonofmError(f"--out {run.path} exists and is not a folder")
    if overwrite and run.path.exists():
        if run.path.is_dir() and any(run.path.iterdir()) and not run.config.is_file():
            raise SonofmError(f"refusing to overwrite {run.path}: it is not a sonofm run folder")
        shutil.rmtree(run.path)
    if run.is_finished:
        raise SonofmError(f"run {run.path} is finished; pass --overwrite to replace it, or choose another --out")
    resuming = run.config.is_file()
    if resuming:
        old = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
        difference = _first_difference(old, config_to_dict(config))
        if difference:
            raise SonofmError(
                f"run {run.path} was started with a different config ({difference}); "
                "rerun with the same options to resume, or pass --overwrite / another --out"
            )
        _require_readable_checkpoints(run)
    elif run.path.is_dir() and any(run.path.iterdir()):
        raise SonofmError(f"--out {run.path} is a non-empty folder that is not a sonofm run; choose another --out")
    return run, resuming


def _require_readable_checkpoints(run: RunFolder) -> None:
    """Refuse to resume ``run`` when a checkpoint it would read back (``last.ckpt``, ``best.ckpt``, those of its
    unfinished folds too) is not a training checkpoint: one line naming the file and how to start over.

    Checkpoints are read ``weights_only`` (tensors and plain containers), so a doctored one runs no code.
    """
    for path in sorted(run.path.rglob("*.ckpt")):
        owner = RunFolder(path.parent.parent)
        if path.name not in CHECKPOINT_NAMES or path.parent != owner.checkpoints or owner.is_finished:
            continue
        problem = _checkpoint_problem(path)
        if problem is not None:
            raise SonofmError(f"cannot resume run {run.path}: checkpoint {path} {problem}; "
                              f"{START_OVER} (this deletes {run.path})")


def _checkpoint_problem(path: Path) -> str | None:
    """What makes ``path`` unusable as a Lightning training checkpoint, or None when it can be resumed from."""
    try:
        content = load_torch_file(path)
    except UnreadableWeightsError as error:
        return f"cannot be read: {error.reason}"
    if not isinstance(content, Mapping):
        return f"holds a {type(content).__name__}, not a training checkpoint"
    missing = [key for key in CHECKPOINT_KEYS if key not in content]
    if missing:
        return f"is not a training checkpoint (no {', '.join(missing)})"
    state = content["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(value, Tensor) for value in state.values()):
        return "is damaged: its state_dict is not a map of tensors"
    return None


def checkpoint_entry(path: str | Path, key: str) -> Any:
    """Entry ``key`` of a Lightning checkpoint, read ``weights_only`` by the one loader; SonofmError naming the file
    (and how to start over) when it is damaged or is not a training checkpoint."""
    try:
        content = load_torch_file(path)
    except UnreadableWeightsError as error:
        raise SonofmError(f"cannot read checkpoint {path}: {error.reason}; {START_OVER}") from None
    if not isinstance(content, Mapping) or key not in content:
        raise SonofmError(f"checkpoint {path} is not a training checkpoint (no '{key}' entry); {START_OVER}")
    return content[key]


def _first_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    for key in sorted(set(old) | set(new)):
        if key in RESUMABLE_KEYS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif _normalise(a) != _normalise(b):
            return f"{prefix}{key}: {a!r} then, {b!r} now"
    return None


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
