"""End-to-end segmentation fine-tuning on phantom masks: learning, the run folder contract, exact resume."""

import json

import pytest
import torch

from sonofm.tasks.seg.finetune import SegFinetuneConfig, finetune_segmenter
from sonofm.runs.run_model import load_run_model


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def phantom_seg(phantom_set):
    return phantom_set(n_per_class=40, size=96, seed=1) / "seg"


@pytest.fixture(scope="module")
def phantom_run(phantom_seg, tmp_path_factory):
    # UPerNet 64 channels wide: at the default 512 its 3x3 convs at stride 4 cost 15x this whole step (7.5 s against
    # 0.5 s, one fp32 thread). fp32 training seeds 0-2 gave test Dice 0.83-0.87, lesion 0.85-0.91, layer 0.81-0.84,
    # HD95 2.2-4.6 px; bf16 results depend on the CPU's rounding (128 wide, seeds 0, 1: Dice 0.78, 0.85), so the
    # thresholds are checked in fp32
    config = SegFinetuneConfig(
        data=str(phantom_seg), model="usfm_vit_tiny_patch16", img_size=96, epochs=40, batch_size=16, num_workers=0,
        head_args={"channels": 64}, precision="32", progress=False,
    )
    config.optim.lr = 2e-3
    out = tmp_path_factory.mktemp("runs") / "phantom"
    return out, finetune_segmenter(config, out, echo=quiet)


@pytest.mark.slow
def test_tiny_vit_with_upernet_segments_phantom_lesions_and_layers(phantom_run):
    _, metrics = phantom_run
    assert metrics["test/dice"] >= 0.8, metrics
    assert metrics["test/dice/class_1"] >= 0.8 and metrics["test/dice/class_2"] >= 0.6
    assert metrics["test/hd95"] < 6  # pixels of the 96 px images


@pytest.mark.slow
def test_run_folder_contract(phantom_run):
    out, metrics = phantom_run
    for name in ("config.yaml", "split.csv", "log.csv", "metrics.json", "model.safetensors", "checkpoints/last.ckpt",
                 "checkpoints/best.ckpt", "per_image_val.csv", "per_image_test.csv", "examples_val.png",
                 "training_curves.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics, nan_ok=True)
    for key in ("test/dice", "test/iou", "test/hd95", "test/pixel_accuracy", "val/dice", "test/dice/class_1",
                "test/iou/class_2", "test/hd95_undefined", "best_epoch"):
        assert key in saved, key
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 40 and "val/dice" in rows[0] and "train/aux_ce" in rows[0]
    test_rows = (out / "per_image_test.csv").read_text().strip().splitlines()
    assert len(test_rows) == 1 + sum(1 for line in (out / "split.csv").read_text().splitlines() if ",test," in line)
    assert not list(out.glob("**/*.tmp"))


@pytest.mark.slow
def test_resnet18_with_unet_decoder_learns_phantom_masks(phantom_seg, tmp_path):
    config = SegFinetuneConfig(
        data=str(phantom_seg), model="resnet18", img_size=64, epochs=8, batch_size=16, head="unet", num_workers=0,
        progress=False,
    )
    config.optim.lr = 2e-3
    metrics = finetune_segmenter(config, tmp_path / "unet", echo=quiet)
    assert metrics["test/dice/class_1"] >= 0.6, metrics


@pytest.mark.slow
def test_saved_model_reloads_with_its_head(phantom_run):
    out, _ = phantom_run
    loaded = load_run_model(out)
    assert loaded.task == "seg" and loaded.classes == ["background", "class_1", "class_2"]
    assert loaded.model.head_name == "upernet"
    with torch.inference_mode():
        scores = loaded.model.predict(torch.zeros(1, 3, 96, 96))
    assert scores.shape == (1, 3, 96, 96)


@pytest.mark.parametrize("head", ["upernet", "segvit"])
def test_interrupted_run_resumes_exactly(phantom_seg, tmp_path, head, crash_at_epoch, assert_same_weights):
    config = SegFinetuneConfig(
        data=str(phantom_seg), model="usfm_vit_tiny_patch16", model_args={"depth": 4}, img_size=64, epochs=3,
        batch_size=16, train_fraction=0.3, head=head, num_workers=0, progress=False,
    )
    finetune_segmenter(config, tmp_path / "straight", echo=quiet)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune_segmenter(config, tmp_path / "resumed", echo=quiet, callbacks=[crash_at_epoch(2)])
    assert not (tmp_path / "resumed/metrics.json").exists()
    finetune_segmenter(config, tmp_path / "resumed", echo=quiet)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed/metrics.json").read_text()) == pytest.approx(
        json.loads((tmp_path / "straight/metrics.json").read_text()), nan_ok=True)
