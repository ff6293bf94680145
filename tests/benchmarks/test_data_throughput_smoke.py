"""Smoke test of benchmarks/data_throughput.py at a tiny size: every figure comes out, positive, with the ratios
computed against the PNG folder of the same run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data_throughput.py"


def test_tiny_run_prints_every_figure():
    command = [sys.executable, str(SCRIPT), "--images", "12", "--batch-size", "4", "--full-size", "64", "80",
               "--pack-size", "40", "--img-size", "32", "--index-entries", "1000"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    rates = {(line["source"], line["workers"]): line for line in lines if line["metric"] == "images_per_s"}
    assert {source for source, _ in rates} == {"png_folder", "jpeg_folder", "packed"}
    for (source, workers), line in rates.items():
        assert line["value"] > 0
        if source != "png_folder":
            expected = line["value"] / rates["png_folder", workers]["value"]
            assert line["ratio_to_png_folder"] == pytest.approx(expected, abs=0.02)
    memory = {line["source"]: line for line in lines if line["metric"] == "index_memory_mib"}
    assert set(memory) == {"packed", "paths"} and all(line["entries"] == 1000 for line in memory.values())
