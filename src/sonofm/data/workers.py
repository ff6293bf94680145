"""How many loader worker processes feed each training or inference process when the user does not say."""

from __future__ import annotations

import os

MAX_WORKERS = 8
"""Beyond this, more workers add memory and start-up time sooner than images per second."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a SLURM or container limit), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def data_workers(requested: int | None, processes_per_machine: int = 1) -> int:
    """``requested`` when given; else the cores this process may use shared among the training processes of the
    machine (``LOCAL_WORLD_SIZE`` under torchrun, else ``processes_per_machine``), less one for the process itself,
    at most :data:`MAX_WORKERS`: 1 on 2 cores, 7 on 8, 0 on 1 (decoding then runs in the training process)."""
    if requested is not None:
        return requested
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", processes_per_machine))
    return max(0, min(MAX_WORKERS, usable_cores() // max(1, processes) - 1))
