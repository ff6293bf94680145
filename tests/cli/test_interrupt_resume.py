"""A fine-tuning run interrupted through the real CLI process: Ctrl-C (SIGINT) after its first checkpoint exits with
code 130, one line and a resumable folder; the rerun, killed with SIGKILL after its own first checkpoint, is resumed
by the same command again and ends with the weights and the log of an uninterrupted run. predict, evaluate and
export refuse the unfinished folder with one line and exit code 2."""

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sonofm.cli.main import main
from sonofm.data.phantom import write_phantom_dataset

EPOCHS = 6
SECONDS_PER_RUN = 300


@dataclass
class Interrupted:
    """What the interrupted processes left behind."""

    straight: Path
    run: Path
    after_ctrl_c: Path
    ctrl_c: subprocess.CompletedProcess
    killed: subprocess.CompletedProcess
    killed_at_epoch: int
    resumed_output: str


def finetune_args(data: Path, out: Path) -> list[str]:
    return ["finetune", "cls", "--data", str(data), "--out", str(out), "--model", "usfm_vit_tiny_patch16",
            "--set", "model_args={depth: 1}", "--img-size", "32", "--epochs", str(EPOCHS), "--batch-size", "8",
            "--num-workers", "0", "--precision", "32", "--no-progress"]


def start_cli(args: list[str]) -> subprocess.Popen:
    """``python -m sonofm.cli.main ARGS`` with this process's torch thread count (same arithmetic as in-process
    runs), unbuffered output and Python's Ctrl-C handling, also when this process runs with SIGINT ignored (a
    background job), which a child would inherit."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONUNBUFFERED": "1"}
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    return subprocess.Popen([sys.executable, "-m", "sonofm.cli.main", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if ignored else None)


def checkpoint_stamp(run: Path) -> int | None:
    path = run / "checkpoints" / "last.ckpt"
    return path.stat().st_mtime_ns if path.is_file() else None


def signal_after_next_checkpoint(process: subprocess.Popen, run: Path, sent: signal.Signals
                                 ) -> subprocess.CompletedProcess:
    """Send ``sent`` to ``process`` as soon as it has written a new ``last.ckpt`` (written atomically by Lightning);
    fail if it ends first."""
    before, deadline = checkpoint_stamp(run), time.monotonic() + SECONDS_PER_RUN
    while checkpoint_stamp(run) in (None, before):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended before a new checkpoint could be interrupted: {process.communicate()}")
        time.sleep(0.01)
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=SECONDS_PER_RUN)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def checkpoint_epoch(run: Path) -> int:
    return int(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"])


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Interrupted:
    data = write_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_per_class=8, size=48, seed=3,
                                 frames_per_group=1) / "cls"
    root = tmp_path_factory.mktemp("interrupt")
    run = root / "run"
    ctrl_c = signal_after_next_checkpoint(start_cli(finetune_args(data, run)), run, signal.SIGINT)
    after_ctrl_c = shutil.copytree(run, root / "after_ctrl_c")
    killed = signal_after_next_checkpoint(start_cli(finetune_args(data, run)), run, signal.SIGKILL)
    killed_at_epoch = checkpoint_epoch(run)
    assert main(finetune_args(data, root / "straight")) == 0
    with contextlib.redirect_stdout(io.StringIO()) as resumed_output:
        assert main(finetune_args(data, run)) == 0  # the same command again, in this process
    return Interrupted(root / "straight", run, after_ctrl_c, ctrl_c, killed, killed_at_epoch,
                       resumed_output.getvalue())


def test_ctrl_c_exits_130_with_one_line_and_leaves_a_resumable_folder(interrupted):
    assert interrupted.ctrl_c.returncode == 130
    assert interrupted.ctrl_c.stderr.endswith("sonofm: interrupted; rerun the same command to resume\n")
    assert "Traceback" not in interrupted.ctrl_c.stderr
    folder = interrupted.after_ctrl_c
    assert (folder / "config.yaml").is_file() and (folder / "split.csv").is_file()
    assert not (folder / "model.safetensors").exists() and not (folder / "metrics.json").exists()
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] > 0 and checkpoint["optimizer_states"]
    assert "resuming" in interrupted.killed.stdout  # the rerun after Ctrl-C picked the folder up


def test_sigkilled_run_resumes_and_ends_like_an_uninterrupted_run(interrupted):
    assert interrupted.killed.returncode == -signal.SIGKILL
    assert interrupted.killed_at_epoch < EPOCHS - 1
    assert interrupted.resumed_output.startswith(f"resuming {interrupted.run}")
    expected = load_file(interrupted.straight / "model.safetensors")
    found = load_file(interrupted.run / "model.safetensors")
    assert expected.keys() == found.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(found[key], tensor, rtol=0, atol=0, msg=key)


def test_resumed_log_has_every_epoch_once_with_the_uninterrupted_losses(interrupted):
    resumed, straight = (read_log(folder) for folder in (interrupted.run, interrupted.straight))
    assert [row["epoch"] for row in resumed] == [str(epoch) for epoch in range(EPOCHS)]
    for key in ("train/loss", "val/loss", "val/balanced_accuracy"):
        assert [row[key] for row in resumed] == [row[key] for row in straight], key


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "--input", "DATA", "--out", "OUT"],
                                     ["export", "--format", "torchscript", "--out", "OUT/model.pt"]])
def test_commands_that_need_a_finished_run_refuse_the_unfinished_one(interrupted, command, tmp_path, cli_error):
    argv = [part.replace("OUT", str(tmp_path / "out")).replace("DATA", str(tmp_path)) for part in command]
    message = cli_error([argv[0], "--run", str(interrupted.after_ctrl_c), *argv[1:]])
    assert f"run {interrupted.after_ctrl_c} has no model.safetensors yet; finish it first" in message
    assert not (tmp_path / "out").exists()


def read_log(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))

