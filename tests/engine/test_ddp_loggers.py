"""``--logger tensorboard,csv`` under DDP (2 CPU processes, gloo, Lightning's launcher): rank 0 alone writes the
loggers' files, into the run folder only, and the events count the steps of the 2-process run."""

import csv
import os
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EPOCHS = 2


@pytest.mark.slow
def test_only_rank_0_writes_the_loggers_files(phantom_set, tmp_path):
    data = phantom_set(n_per_class=8, size=48, seed=3, frames_per_group=1) / "cls"
    run = tmp_path / "run"
    argv = ["finetune", "cls", "--data", str(data), "--model", "usfm_vit_tiny_patch16",
            "--set", "model_args={depth: 1}", "--img-size", "32", "--epochs", str(EPOCHS), "--batch-size", "4",
            "--precision", "32", "--num-workers", "0", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
            "--no-progress", "--logger", "tensorboard,csv", "--out", str(run)]
    result = subprocess.run([sys.executable, "-m", "sonofm", *argv], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]  # nothing beside the run folder
    assert sorted(path.name for path in (run / "logs").iterdir()) == ["csv", "tensorboard"]
    assert len(list((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))) == 1  # one writer
    assert [path.name for path in (run / "logs" / "csv").iterdir()] == ["version_0"]

    with (run / "log.csv").open(newline="") as handle:
        epoch_ends = [int(row["step"]) - 1 for row in csv.DictReader(handle)]
    events = EventAccumulator(str(run / "logs" / "tensorboard"))
    events.Reload()
    assert len(epoch_ends) == EPOCHS
    assert [event.step for event in events.Scalars("train/loss_step")] == list(range(epoch_ends[-1] + 1))
    assert [event.step for event in events.Scalars("val/balanced_accuracy")] == epoch_ends
