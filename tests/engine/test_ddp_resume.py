"""Exact resume under DDP and from packed folders: a run stopped after a mid-epoch checkpoint and run again ends
with the weights of an uninterrupted run, bit for bit (image folders on 2 processes; a packed folder on 1 and 2)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sonofm.data.pack_writer import pack_images

SCRIPT = Path(__file__).with_name("ddp_resume.py")
# 16 images of batch 2: 8 steps an epoch on 1 process, 4 on 2; checkpoints every 3 steps. Stopped at step 8, the
# run resumes from step 6, mid-epoch either way.
CRASH_STEP = "8"


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(("data", "processes"), [("folder", "2"), ("packed", "2"), ("packed", "1")])
def test_a_run_resumed_mid_epoch_matches_an_uninterrupted_one(phantom_set, tmp_path, data, processes):
    images = phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1) / "seg" / "images"
    if data == "packed":
        pack_images([images], tmp_path / "packed", progress=False)
        images = tmp_path / "packed"
    straight = run_script(str(images), str(tmp_path / "straight"), processes)
    assert straight.returncode == 0, straight.stderr[-3000:]
    crashed = run_script(str(images), str(tmp_path / "resumed"), processes, CRASH_STEP)
    assert crashed.returncode != 0 and "simulated crash at step 8" in crashed.stderr
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = run_script(str(images), str(tmp_path / "resumed"), processes)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = load_file(tmp_path / "straight" / "model.safetensors")
    got = load_file(tmp_path / "resumed" / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
