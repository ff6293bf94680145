"""Which process of a multi-process launch this is, and run-folder work done by global rank 0 first.

Two ways to start several processes:

- Lightning's own launcher (``--devices 2 --strategy ddp`` on one command): the command runs as rank 0 and, when
  ``trainer.fit`` starts, Lightning re-runs it for the other ranks with ``LOCAL_RANK`` / ``NODE_RANK`` set. Rank 0
  has prepared the run folder by then; the others only read it.
- ``torchrun`` or SLURM's ``srun``: every rank starts at once (``RANK`` / ``SLURM_PROCID``). Rank 0 prepares the run
  folder while the others wait at a barrier of a process group created here, which Lightning then reuses.

Either way only the global rank 0 creates, overwrites or writes the run folder and scans the data; the other ranks
wait, then read what rank 0 wrote.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment

from sonofm.runs.run_folder import RunFolder


def is_rank_zero() -> bool:
    """True in the one process that owns the run folder (and prints), read from the launcher's variables before any
    process group exists: ``RANK`` (torchrun), ``SLURM_PROCID`` (srun), ``NODE_RANK`` / ``LOCAL_RANK`` (Lightning)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]) == 0
    if _srun_tasks() > 1:
        return int(os.environ["SLURM_PROCID"]) == 0
    return int(os.environ.get("NODE_RANK", "0")) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def started_together() -> bool:
    """True when every rank was started at once (torchrun, srun with several tasks), so rank 0 must be waited for."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else _srun_tasks()
    return world > 1


@contextlib.contextmanager
def rank_zero_first(accelerator: str = "auto") -> Iterator[bool]:
    """Run the block on rank 0 first, then on the other ranks; yields whether this is rank 0.

    With torchrun or srun the other ranks wait at a barrier until rank 0 has left the block (the process group is
    created on first use; Lightning reuses it), as they do in a later run of the same processes (k-fold, label
    efficiency). For Lightning's own launcher's first run rank 0 ran the block before the other processes existed.
    """
    wait = started_together() or _in_process_group()
    zero = is_rank_zero()
    if wait and not zero:
        _barrier(accelerator)
    yield zero
    if wait and zero:
        _barrier(accelerator)


def attach_run(out: str | Path) -> tuple[RunFolder, bool]:
    """For a rank other than 0: the run folder rank 0 prepared, and True, as every saved file (split, image list)
    is to be read back, never made again."""
    return RunFolder(Path(out)), True


def _in_process_group() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier(accelerator: str) -> None:
    if not dist.is_initialized():
        _init_process_group(accelerator)
    dist.barrier()


def _init_process_group(accelerator: str) -> None:
    """The default process group Lightning would create (NCCL on GPUs, else gloo), from the launcher's variables."""
    if _srun_tasks() > 1 and "RANK" not in os.environ:
        slurm = SLURMEnvironment()
        os.environ.setdefault("MASTER_ADDR", slurm.main_address)
        os.environ.setdefault("MASTER_PORT", str(slurm.main_port))
        rank, world = slurm.global_rank(), slurm.world_size()
    else:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if on_gpu else "gloo", rank=rank, world_size=world)


def _srun_tasks() -> int:
    """Tasks of the current ``srun`` step (1 outside SLURM, or in a batch script that did not go through srun)."""
    if not SLURMEnvironment.detect() or "SLURM_STEP_ID" not in os.environ:
        return 1
    return int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1")))
