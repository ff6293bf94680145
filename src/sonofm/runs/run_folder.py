"""The run folder contract: what a run writes, and whether a command starts, resumes or refuses.

Layout::

    RUN/config.yaml          resolved config (written when the run starts)
    RUN/split.csv            the exact samples of every split (name,split,group,label)
    RUN/log.csv              one row per epoch
    RUN/checkpoints/last.ckpt, best.ckpt   resumable Lightning checkpoints
    RUN/model.safetensors    the final model (weights + metadata)
    RUN/metrics.json         flat ``split/metric`` keys; its presence marks the run finished
    RUN/*.png                figures
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sonofm.errors import SonofmError
from sonofm.runs.config import config_to_dict

# Keys that may change between the first start and a resume without changing what is being trained.
RESUMABLE_KEYS = frozenset({"num_workers", "devices", "accelerator", "strategy", "num_nodes", "progress"})


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
    elif run.path.is_dir() and any(run.path.iterdir()):
        raise SonofmError(f"--out {run.path} is a non-empty folder that is not a sonofm run; choose another --out")
    return run, resuming


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
