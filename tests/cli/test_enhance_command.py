"""`sonofm finetune enhance` through the CLI: a short run, and one-line errors for bad options."""

import json

import pytest

from sonofm.cli.main import main
from sonofm.data.phantom import write_phantom_dataset

FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}", "--img-size", "32", "--epochs", "1",
        "--batch-size", "8", "--num-workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_per_class=4, size=48, seed=3,
                                 frames_per_group=1)


def test_enhance_command_writes_a_finished_run(phantom, tmp_path):
    out = tmp_path / "run"
    assert main(["finetune", "enhance", "--data", str(phantom / "seg"), "--degradation", "downsample", "--scale", "4",
                 "--out", str(out), *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test/psnr" in metrics and "test/psnr_degraded" in metrics
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
