"""Lightning's experiment loggers beside ``log.csv`` (``--logger``), writing under ``RUN/logs/``.

``csv``: ``logs/csv/version_N/metrics.csv`` (a new version each time the run starts or resumes); ``tensorboard``:
``logs/tensorboard/`` (one folder; a resumed run appends and hides what the interrupted one logged after its last
checkpoint); ``wandb``: ``logs/wandb/``, offline unless ``WANDB_MODE`` or ``WANDB_API_KEY`` is set; ``mlflow``: a
file store in ``logs/mlflow/`` unless ``MLFLOW_TRACKING_URI`` is set. A resumed run continues the same W&B and MLflow
run (their ids are kept in ``logs/run_ids.json``). Only global rank 0 builds loggers, so no other rank writes files.
"""

from __future__ import annotations

import importlib
import json
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from sonofm.atomic import atomic_write_json
from sonofm.engine.distributed import is_rank_zero
from sonofm.extras import missing_extra
from sonofm.runs.config import config_to_dict
from sonofm.runs.run_folder import RESUMABLE_KEYS, RunFolder, checkpoint_entry

PACKAGES = {"csv": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
"""Logger name -> the module it needs, installed by the sonofm extra of the logger's name."""
LOGS = "logs"
RUN_IDS = "run_ids.json"


def logger_checks(names: Sequence[str]) -> list[tuple[bool, str]]:
    """``(ok, message)`` pairs: every name is known and its package is installed (so a run never starts without)."""
    unknown = [name for name in names if name not in PACKAGES]
    if unknown:
        return [(False, f"--logger must be among {', '.join(PACKAGES)}, got {unknown[0]!r}")]
    return [(_importable(PACKAGES[name]), str(missing_extra(f"--logger {name}", name)))
            for name in dict.fromkeys(names)]


def run_loggers(config: Any, run: RunFolder) -> list[Logger]:
    """The loggers ``config.loggers`` names, writing under ``RUN/logs``, each given the run's config as its
    hyperparameters (less the keys a resume may change); none on ranks other than global rank 0."""
    if not config.loggers or not is_rank_zero():
        return []
    logs = run.path / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    ids = _saved_ids(logs)
    loggers = [BUILDERS[name](run, ids) for name in dict.fromkeys(config.loggers)]
    if ids:
        atomic_write_json(logs / RUN_IDS, ids)
    as_saved = yaml.safe_load(yaml.safe_dump(config_to_dict(config)))  # as config.yaml holds it: lists, no tuples
    hyperparameters = {key: value for key, value in as_saved.items() if key not in RESUMABLE_KEYS}
    for logger in loggers:
        logger.log_hyperparams(hyperparameters)
    return loggers


def detach_loggers(trainer: L.Trainer) -> None:
    """After ``fit``: end the W&B run (it would stay open in this process, and a next run in it, a k-fold round,
    would log into it) and detach every logger, so the final evaluation's scores go to ``metrics.json`` only."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
    trainer.loggers = []


def _importable(module: str | None) -> bool:
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _saved_ids(logs: Path) -> dict[str, str]:
    """The W&B and MLflow run ids an earlier start of this run kept, by logger name."""
    path = logs / RUN_IDS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _csv(run: RunFolder, ids: dict[str, str]) -> Logger:
    (run.path / LOGS / "csv").mkdir(exist_ok=True)  # keeps Lightning from warning of a missing folder
    return CSVLogger(run.path / LOGS, name="csv")


def _tensorboard(run: RunFolder, ids: dict[str, str]) -> Logger:
    """Events from the resumed checkpoint's step on, written before an interruption, are hidden (``purge_step``)."""
    resumed = run.last_checkpoint.is_file()
    step = int(checkpoint_entry(run.last_checkpoint, "global_step")) if resumed else 0
    return TensorBoardLogger(run.path / LOGS, name="", version="tensorboard", default_hp_metric=False,
                             purge_step=step)


def _wandb(run: RunFolder, ids: dict[str, str]) -> Logger:
    ids.setdefault("wandb", uuid.uuid4().hex[:8])
    configured = "WANDB_MODE" in os.environ or "WANDB_API_KEY" in os.environ
    return WandbLogger(name=run.path.name, save_dir=str(run.path / LOGS), id=ids["wandb"],
                       project=os.environ.get("WANDB_PROJECT", "sonofm"), mode=None if configured else "offline")


def _mlflow(run: RunFolder, ids: dict[str, str]) -> Logger:
    """MLflow 3 keeps its file store in maintenance mode, refused unless ``MLFLOW_ALLOW_FILE_STORE`` allows it."""
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    logger = MLFlowLogger(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "sonofm"), run_name=run.path.name,
                          tracking_uri=tracking_uri, save_dir=str((run.path / LOGS / "mlflow").resolve()),
                          run_id=ids.get("mlflow"))
    ids["mlflow"] = str(logger.run_id)  # creates the run now, so an interrupted one is continued
    return logger


# name -> builder of that logger for a run, given the saved run ids (a builder adds any id it creates)
BUILDERS: dict[str, Callable[[RunFolder, dict[str, str]], Logger]] = {
    "csv": _csv, "tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow,
}
