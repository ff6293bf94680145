"""`sonofm pretrain mim` and `sonofm experiment label-efficiency` input errors: one line, exit code 2; a MIM run
interrupted between two step checkpoints (`checkpoint_every`) resumes exactly."""

import pytest
import torch
from safetensors.torch import load_file

from sonofm.cli.main import main
from sonofm.tasks.mim.module import MimModule


@pytest.fixture(scope="module")
def images(phantom_set):
    return phantom_set(n_per_class=2, size=64, seed=3) / "seg" / "images"


def pretrain(images, out, *extra):
    return ["pretrain", "mim", "--data", str(images), "--model", "usfm_vit_tiny_patch16", "--img-size", "64",
            "--epochs", "1", "--no-progress", "--out", str(out), *extra]


def test_missing_folder_is_named(tmp_path, cli_error):
    message = cli_error(pretrain(tmp_path / "nowhere", tmp_path / "run"))
    assert "nowhere" in message
    assert not (tmp_path / "run").exists()


def test_unknown_mim_key_is_named(images, tmp_path, cli_error):
    message = cli_error(pretrain(images, tmp_path / "run", "--set", "mim.mask_size=16"))
    assert "mim.mask_size" in message and "mask_patch" in message


def test_mask_patch_that_does_not_tile_the_image_is_refused(images, tmp_path, cli_error):
    message = cli_error(pretrain(images, tmp_path / "run", "--set", "mim.mask_patch=48"))
    assert "mask_patch" in message and "64" in message


def test_fsdp_without_gpu_is_a_clear_error(images, tmp_path, cli_error):
    message = cli_error(pretrain(images, tmp_path / "run", "--accelerator", "cpu", "--devices", "2",
                                        "--strategy", "fsdp"))
    assert "fsdp" in message and "GPU" in message


def test_label_efficiency_needs_pretrain_data_or_weights(images, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "label-efficiency", "--data", str(images), "--out", str(tmp_path / "exp")])
    assert "--pretrain-data" in capsys.readouterr().err


def test_label_efficiency_fraction_out_of_range(images, tmp_path, cli_error):
    message = cli_error(["experiment", "label-efficiency", "--data", str(images), "--weights", "w.safetensors",
                                "--fractions", "0.5,1.5", "--out", str(tmp_path / "exp")])
    assert "--fractions" in message


def step_checkpointed(images, out):
    """Two epochs of 4 steps (8 images, batch 2), a ``last.ckpt`` after every step."""
    return ["pretrain", "mim", "--data", str(images), "--model", "usfm_vit_tiny_patch16",
            "--set", "model_args={depth: 1}", "--img-size", "32", "--set", "mim.mask_patch=16", "--epochs", "2",
            "--batch-size", "2", "--num-workers", "0", "--precision", "32", "--no-progress",
            "--set", "checkpoint_every=1", "--set", "figure_every=0", "--out", str(out)]


def test_mim_resumed_from_a_mid_epoch_step_checkpoint_ends_with_the_uninterrupted_weights(images, tmp_path,
                                                                                          monkeypatch):
    assert main(step_checkpointed(images, tmp_path / "straight")) == 0
    train_step = MimModule.training_step

    def crash_at_step_6(module, batch, batch_idx):
        if module.global_step == 6:
            raise RuntimeError("simulated crash")
        return train_step(module, batch, batch_idx)

    monkeypatch.setattr(MimModule, "training_step", crash_at_step_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(step_checkpointed(images, tmp_path / "resumed"))
    monkeypatch.setattr(MimModule, "training_step", train_step)
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 6)  # two steps into the second epoch
    assert main(step_checkpointed(images, tmp_path / "resumed")) == 0
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key, tensor in straight.items():
        torch.testing.assert_close(resumed[key], tensor, rtol=0, atol=0, msg=key)
