"""`sonofm experiment label-efficiency --task seg --weights FILE` through the CLI: every (init, fraction, seed) run is
a segmentation run whose Dice is the one reported, the pretrained runs start from FILE and the random-init ones do not;
a missing weights file is refused before anything is written."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from sonofm.cli.main import main

MODEL = ["--model", "usfm_vit_tiny_patch16", "--img-size", "32", "--set", "model_args={depth: 1}"]
# seg.optim.lr=0 keeps every backbone where its run started, so the runs show which weights they started from.
SEG = ["--set", "seg.head=linear", "--set", "seg.epochs=1", "--set", "seg.batch_size=16", "--set", "seg.num_workers=0",
       "--set", "seg.precision=32", "--set", "seg.optim.lr=0"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=4, size=48, seed=6, frames_per_group=1) / "seg"


@pytest.fixture(scope="module")
def experiment(phantom, tiny_vit_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "le_seg"
    assert main(["experiment", "label-efficiency", "--task", "seg", "--data", str(phantom),
                 "--weights", str(tiny_vit_weights), *MODEL, "--fractions", "1.0", "--seeds", "1", "--out", str(out),
                 "--no-progress", *SEG]) == 0
    return out


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_seg_run_reports_its_own_test_dice(experiment):
    rows = read_csv(experiment / "results.csv")
    assert sorted((row["init"], row["fraction"], row["seed"]) for row in rows) == [
        ("pretrained", "1.0", "0"), ("scratch", "1.0", "0")]
    assert {"test/dice", "test/iou", "test/hd95"} <= rows[0].keys()
    for row in rows:
        run = experiment / "runs" / f"{row['init']}_f{float(row['fraction']):g}_s{row['seed']}"
        assert "head: linear" in (run / "config.yaml").read_text()
        metrics = json.loads((run / "metrics.json").read_text())
        assert float(row["test/dice"]) == pytest.approx(metrics["test/dice"], abs=1e-9)
    assert not (experiment / "pretrain").exists()  # --weights: no pretraining


def test_pretrained_runs_start_from_the_weights_and_scratch_runs_do_not(experiment, tiny_vit_weights):
    given = load_file(tiny_vit_weights)
    pretrained = load_file(experiment / "runs" / "pretrained_f1_s0" / "model.safetensors")
    scratch = load_file(experiment / "runs" / "scratch_f1_s0" / "model.safetensors")
    for key, tensor in given.items():
        torch.testing.assert_close(pretrained[f"backbone.{key}"], tensor, rtol=0, atol=0, msg=key)
    assert not torch.equal(scratch["backbone.blocks.0.attn.qkv.weight"], given["blocks.0.attn.qkv.weight"])


def test_missing_weights_file_is_refused_before_anything_is_written(phantom, tmp_path, cli_error):
    message = cli_error(["experiment", "label-efficiency", "--task", "seg", "--data", str(phantom),
                         "--weights", str(tmp_path / "none.safetensors"), *MODEL, "--out", str(tmp_path / "exp")])
    assert "none.safetensors" in message
    assert not (tmp_path / "exp").exists()
