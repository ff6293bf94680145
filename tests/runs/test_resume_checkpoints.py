"""Resuming reads back a run's checkpoints first: a damaged or doctored one is named in one line with the way to
start over (``--overwrite``), never a traceback, and never runs code."""

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import prepare_run


@dataclass
class Config:
    data: str = "d"
    epochs: int = 2


class WritesMarker:
    """Unpickling this would call ``open(marker, "w")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def checkpoint_bytes(**extra) -> bytes:
    """A checkpoint with the entries Lightning reads back when resuming (plus ``extra``)."""
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "global_step": 4, "state_dict": {"model.w": torch.ones(3)}, "loops": {},
                "optimizer_states": [], "lr_schedulers": [], **extra}, buffer)
    return buffer.getvalue()


def started_run(root: Path, checkpoint: bytes, where: str = "checkpoints/last.ckpt") -> Path:
    """An unfinished run folder with ``checkpoint`` written at ``where``; returns the checkpoint's path."""
    save_config(Config(), root / "config.yaml")
    path = root / where
    path.parent.mkdir(parents=True)
    path.write_bytes(checkpoint)
    return path


def resume_refusal(root: Path) -> str:
    with pytest.raises(SonofmError) as refused:
        prepare_run(root, Config())
    message = str(refused.value)
    assert "\n" not in message and "weights_only" not in message
    return message


def test_a_readable_checkpoint_resumes(tmp_path):
    started_run(tmp_path / "run", checkpoint_bytes())
    started_run(tmp_path / "run", checkpoint_bytes(), where="fold_0/checkpoints/best.ckpt")
    assert prepare_run(tmp_path / "run", Config())[1] is True


@pytest.mark.parametrize("damage, what", [
    (lambda valid: valid[: len(valid) // 2], "cannot be read: it is a damaged zip archive"),
    (lambda valid: b"", "cannot be read: the file is empty"),
    (lambda valid: bytes(range(256)) * 4, "cannot be read: it is neither a safetensors file nor a PyTorch file"),
    (lambda valid: b"\x80\x02" + b"\xff" * 64, "cannot be read: it is not a readable PyTorch file (truncated"),
])
def test_a_damaged_last_checkpoint_is_named_with_how_to_start_over(tmp_path, damage, what):
    run = tmp_path / "run"
    checkpoint = started_run(run, damage(checkpoint_bytes()))
    message = resume_refusal(run)
    assert message.startswith(f"cannot resume run {run}: checkpoint {checkpoint} {what}")
    assert message.endswith(f"; pass --overwrite to start the run over (this deletes {run})")
    assert prepare_run(run, Config(), overwrite=True)[1] is False and not run.exists()  # starting over works


def test_a_file_that_is_not_a_training_checkpoint_is_refused(tmp_path):
    state_only = io.BytesIO()
    torch.save({"model.w": torch.ones(3)}, state_only)
    for number, (data, what) in enumerate([
        (state_only.getvalue(), "is not a training checkpoint (no state_dict, epoch, global_step, loops, "
                                "optimizer_states)"),
        (checkpoint_bytes(state_dict={"w": "not a tensor"}), "is damaged: its state_dict is not a map of tensors"),
    ]):
        run = tmp_path / f"run{number}"
        checkpoint = started_run(run, data)
        assert f"checkpoint {checkpoint} {what}; pass --overwrite" in resume_refusal(run)


def test_a_damaged_checkpoint_of_an_unfinished_fold_is_found(tmp_path):
    run = tmp_path / "kfold"
    started_run(run, checkpoint_bytes())
    fold = run / "fold_1" / "checkpoints" / "best.ckpt"
    fold.parent.mkdir(parents=True)
    fold.write_bytes(b"")
    assert f"checkpoint {fold} cannot be read: the file is empty" in resume_refusal(run)
    (run / "fold_1" / "metrics.json").write_text("{}")  # a finished fold is never read back
    assert prepare_run(run, Config())[1] is True


def test_a_doctored_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "code_ran"
    run = tmp_path / "run"
    checkpoint = started_run(run, checkpoint_bytes(callbacks={"hook": WritesMarker(marker)}))
    message = resume_refusal(run)
    assert f"checkpoint {checkpoint} cannot be read: it holds pickled Python objects, not just tensors" in message
    assert not marker.exists()
