"""`sonofm pretrain aclus` through the CLI on phantom data, with SONOFM_DATA unset: the run folder, the step count, the
exported backbone; a missing anatomy-map folder is a one-line error that leaves nothing behind."""

import csv
import json
import math

import pytest
import torch

from sonofm.cli.main import main
from sonofm.models import create_backbone

IMAGES, BATCH, EPOCHS = 8, 8, 2


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=IMAGES // 4, size=48, seed=5, frames_per_group=1) / "seg"


def aclus(phantom, out, masks=None):
    return ["pretrain", "aclus", "--data", str(phantom / "images"), "--masks", str(masks or phantom / "masks"),
            "--model", "resnet18", "--img-size", "32", "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
            "--num-workers", "0", "--precision", "32", "--no-progress", "--set", "aclus.num_ids=4",
            "--out", str(out)]


@pytest.fixture(scope="module")
def finished_run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "aclus"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SONOFM_DATA", raising=False)
        assert main(aclus(phantom, out)) == 0
    return out


def test_aclus_runs_every_step_on_phantom_maps_without_sonofm_data(finished_run):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["images"] == IMAGES and metrics["steps"] == EPOCHS * IMAGES // BATCH
    with (finished_run / "log.csv").open() as handle:
        log = list(csv.DictReader(handle))
    assert [row["epoch"] for row in log] == [str(epoch) for epoch in range(EPOCHS)]
    for row in log:
        assert math.isfinite(float(row["train/contrast_epoch"])) and math.isfinite(float(row["train/context_epoch"]))
    with (finished_run / "pairs.csv").open() as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == IMAGES


def test_exported_backbone_is_the_trained_online_resnet(finished_run):
    backbone = create_backbone("resnet18", weights=finished_run / "model.safetensors")
    assert backbone.load_report.missing == []
    trained = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, tensor in backbone.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(tensor, trained[f"model.online.fpn.backbone.{name}"], rtol=0, atol=0, msg=name)


def test_missing_mask_folder_is_named_and_nothing_is_written(phantom, tmp_path, cli_error):
    message = cli_error(aclus(phantom, tmp_path / "run", masks=tmp_path / "no_maps"))
    assert "no_maps" in message
    assert not (tmp_path / "run").exists()
