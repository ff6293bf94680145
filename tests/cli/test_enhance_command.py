"""`sonofm finetune enhance` through the CLI: a short run, and one-line errors for bad options."""

import csv
import json
import math
from pathlib import Path

import pytest

from sonofm.cli.main import main

FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}", "--img-size", "32", "--epochs", "1",
        "--batch-size", "8", "--num-workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1)


def test_enhance_command_writes_a_finished_run(phantom, tmp_path):
    """One epoch at a high constant learning rate already restores the fan (where the loss is) of every test image
    better than the 4x downsampled input (gains 0.22-0.65 dB per image over seeds 0-3, in fp32 and bf16)."""
    out = tmp_path / "run"
    assert main(["finetune", "enhance", "--data", str(phantom / "seg"), "--degradation", "downsample", "--scale", "4",
                 "--out", str(out), "--lr", "4e-3", "--set", "optim.warmup_epochs=0", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    names = [f"test/{metric}{suffix}" for metric in ("psnr", "ssim", "psnr_fan", "ssim_fan")
             for suffix in ("", "_degraded")]
    assert metrics.keys() == {"best_epoch", *names} and metrics["best_epoch"] == 0
    assert all(math.isfinite(metrics[name]) for name in names)
    assert all(10 < metrics[name] < 60 if "psnr" in name else 0 < metrics[name] <= 1 for name in names)
    assert metrics["test/psnr_fan"] > metrics["test/psnr_fan_degraded"] + 0.2
    with (out / "split.csv").open() as handle:
        test_images = {row["name"] for row in csv.DictReader(handle) if row["split"] == "test"}
    with (out / "per_image_test.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(Path(row["image"]).name for row in rows) == sorted(test_images) and len(rows) == 4
    assert all(float(row["psnr_fan"]) > float(row["psnr_fan_degraded"]) for row in rows)
    assert (out / "examples_test.png").is_file()
    assert "scale: 4" in (out / "config.yaml").read_text()


@pytest.mark.parametrize("flags, words", [
    (["--degradation", "noise"], "--degradation must be one of"),
    (["--degradation", "downsample", "--scale", "3"], "--scale must be 2 or 4"),
])
def test_bad_options_fail_with_one_line(phantom, tmp_path, cli_error, flags, words):
    line = cli_error(["finetune", "enhance", "--data", str(phantom / "seg"), "--out", str(tmp_path / "r"),
                      *flags, *FAST])
    assert words in line
    assert not (tmp_path / "r").exists()
