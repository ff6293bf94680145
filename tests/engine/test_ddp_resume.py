"""Exact resume under DDP: a 2-process run stopped after a mid-epoch checkpoint and run again ends with the weights
of an uninterrupted 2-process run, bit for bit."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("ddp_resume.py")
# 16 images, 2 ranks of batch 2: 4 steps an epoch, checkpoints every 3 steps. Stopped at step 8, the run resumes
# from step 6, half-way through the second epoch.
CRASH_STEP = "8"


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_two_process_run_resumed_mid_epoch_matches_an_uninterrupted_one(phantom_set, tmp_path):
    images = str(phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1) / "seg" / "images")
    straight = run_script(images, str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    crashed = run_script(images, str(tmp_path / "resumed"), CRASH_STEP)
    assert crashed.returncode != 0 and "simulated crash at step 8" in crashed.stderr
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = run_script(images, str(tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = load_file(tmp_path / "straight" / "model.safetensors")
    got = load_file(tmp_path / "resumed" / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
