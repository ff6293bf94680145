"""Smoke test of benchmarks/ddp_scaling.py: a tiny ViT at 32 px on 1 and 2 gloo processes prints every figure,
finite and positive, with the efficiency computed from the two throughputs of the same run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ddp_scaling.py"


@pytest.mark.slow
def test_tiny_run_prints_every_figure():
    command = [sys.executable, str(SCRIPT), "--model", "usfm_vit_tiny_patch16",
               "--img-size", "32", "--batch-size", "2", "--steps", "2", "--warmup", "1", "--precision", "32"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    figures = {(line["processes"], line["metric"]): line["value"] for line in lines}
    assert set(figures) == {(1, "images_per_s"), (2, "images_per_s"), (1, "peak_memory_mib_rank0"),
                            (2, "peak_memory_mib_rank0"), (2, "scaling_efficiency")}
    assert all(value > 0 for value in figures.values())
    assert figures[2, "scaling_efficiency"] == pytest.approx(
        figures[2, "images_per_s"] / (2 * figures[1, "images_per_s"]), rel=0.01)
    assert all(line["benchmark"] == "ddp_scaling" and line["cpu_flags"] for line in lines)
