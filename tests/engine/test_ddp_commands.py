"""Every training command on 2 CPU processes (gloo, Lightning's launcher), all in one launch: each exits 0 on both
ranks (the ranks' final weights and buffers are compared after every fit, and any difference fails the command),
leaves one finished run folder written by rank 0 alone, and prints no traceback; the test metrics of the 2-process
run are those of a 1-process evaluation of the same weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sonofm.cli.main import main
from sonofm.models import create_backbone
from sonofm.models.weights import save_backbone_weights
from sonofm.sam import build_sam, save_sam_checkpoint

SCRIPT = Path(__file__).with_name("ddp_commands.py")
RUNS = {  # command -> run folder it finishes
    "finetune_cls": "cls", "finetune_cls_overwrite": "cls", "finetune_seg": "seg", "finetune_enhance": "enhance",
    "pretrain_mim_token": "mim_token", "pretrain_mim_mean": "mim_mean", "pretrain_aclus": "aclus",
    "sam_finetune": "sam", "sam_train_prompter": "prompter", "kfold": "kfold", "label_efficiency": "label_efficiency",
    "compare": "compare",
}


@pytest.fixture(scope="module")
def launch(phantom_set, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The output folder and the finished 2-process launch of every command."""
    data = phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1)
    work = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    sam = save_sam_checkpoint(build_sam("vit_tiny"), work / "sam_vit_tiny.pth")
    encoder = work / "encoder.safetensors"
    save_backbone_weights(create_backbone("usfm_vit_tiny_patch16", img_size=32, depth=1), encoder)
    out = work / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), str(data), str(sam), str(encoder), str(out)],
                            capture_output=True, text=True, env=env, timeout=900, cwd=work)
    return out, result


@pytest.mark.slow
def test_the_launch_ends_without_a_traceback(launch):
    _, result = launch
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("command", list(RUNS))
def test_command_exits_0_on_both_ranks_with_one_finished_run(launch, command):
    out, result = launch
    for rank in (0, 1):
        codes = json.loads((out / f"exit_codes_{rank}.json").read_text())
        assert codes[command] == 0, (rank, result.stderr[-4000:])
    run = out / RUNS[command]
    assert (run / "metrics.json").is_file()
    assert (run / "config.yaml").is_file()


@pytest.mark.slow
def test_only_rank_0_wrote_the_run_folders(launch):
    out, _ = launch
    written = sorted(path.name for path in out.iterdir())
    assert written == sorted({*RUNS.values(), "exit_codes_0.json", "exit_codes_1.json"})
    temporaries = [path for path in out.rglob("*") if ".tmp" in path.name]
    assert temporaries == []


@pytest.mark.slow
def test_two_process_test_metrics_equal_a_one_process_evaluation(launch, capsys):
    out, _ = launch
    trained = json.loads((out / "cls" / "metrics.json").read_text())
    assert main(["evaluate", "--run", str(out / "cls"), "--no-progress"]) == 0
    evaluated = json.loads((out / "cls" / "evaluate_test.json").read_text())
    for key, value in evaluated.items():
        assert trained[key] == pytest.approx(value, abs=1e-6), key
