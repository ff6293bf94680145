"""`sonofm pretrain mim` and `sonofm experiment label-efficiency` input errors: one line, exit code 2."""

import pytest

from sonofm.cli.main import main
from sonofm.data.phantom import write_phantom_dataset


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_per_class=2, size=64, seed=3) / "seg" / "images"


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
