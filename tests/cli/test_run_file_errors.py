"""A run folder whose files are damaged or of another kind: `predict`/`export`/`evaluate` on a pretraining run, a
``model.safetensors`` whose metadata lacks an entry, a damaged ``best.ckpt``; each is one line naming the file."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from sonofm.errors import SonofmError
from sonofm.models import create_backbone, save_backbone_weights
from sonofm.atomic import atomic_write_json
from sonofm.runs.config import save_config
from sonofm.engine.trainer import checkpoint_epoch, load_best_weights
from sonofm.tasks.mim.pretrain import MimPretrainConfig, build_mim_model

TINY_MODEL = {"depth": 1, "embed_dim": 32, "num_heads": 2}
UNSAFE_ADVICE = ("weights_only", "safe_globals")
CLS_METADATA = {"task": '"cls"', "model": '"usfm_vit_tiny_patch16"', "img_size": "32", "classes": '["a", "b"]'}


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(path)
    return path


def finished_run(folder: Path, metadata: dict[str, str]) -> Path:
    """A run folder (config.yaml, metrics.json) whose ``model.safetensors`` carries ``metadata`` verbatim."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("task: cls\n")
    save_file({"weight": torch.zeros(2)}, folder / "model.safetensors", metadata=metadata)
    atomic_write_json(folder / "metrics.json", {"test/accuracy": 0.5})
    return folder


def commands_on(run: Path, tmp_path: Path) -> list[list[str]]:
    """``predict``, ``export`` and ``evaluate`` on ``run``, writing under ``tmp_path/out``."""
    picture = image(tmp_path / "in" / "scan.png")
    return [["predict", "--run", str(run), "--input", str(picture), "--out", str(tmp_path / "out")],
            ["export", "--run", str(run), "--format", "onnx", "--out", str(tmp_path / "out" / "m.onnx")],
            ["evaluate", "--run", str(run), "--no-progress"]]


@pytest.fixture(scope="module")
def mim_run(tmp_path_factory) -> tuple[Path, MimPretrainConfig]:
    """A pretraining run folder as ``pretrain mim`` leaves it: config.yaml, metrics.json and the encoder of its
    masked-image model exported as ``pretrain mim`` does (``model.safetensors`` with ``sonofm_backbone`` metadata);
    no training step."""
    run = tmp_path_factory.mktemp("mim") / "run"
    config = MimPretrainConfig(data=["unused"], model="usfm_vit_tiny_patch16", model_args=dict(TINY_MODEL),
                               img_size=32)
    save_config(config, run / "config.yaml")
    save_backbone_weights(build_mim_model(config).encoder, run / "model.safetensors")
    atomic_write_json(run / "metrics.json", {"steps": 1.0})
    return run, config


def test_predict_export_evaluate_on_a_pretraining_run_say_to_finetune_from_it(mim_run, tmp_path, cli_error):
    run, config = mim_run
    weights = run / "model.safetensors"
    for argv in commands_on(run, tmp_path):
        message = cli_error(argv)
        assert message == (f"sonofm: error: run {run} is a pretraining run: {weights} holds a usfm_vit_tiny_patch16 "
                           "backbone without a task head; fine-tune it first with `sonofm finetune cls|seg|enhance "
                           f"--model usfm_vit_tiny_patch16 --weights {weights}` and use the fine-tuned run\n"), argv
    assert not (tmp_path / "out").exists()
    advised = create_backbone(config.model, img_size=config.img_size, weights=weights, **TINY_MODEL)
    assert advised.load_report.loaded and not advised.load_report.missing  # the advice loads every weight


NOT_WRITTEN_BY_SONOFM = " (it was not written by a sonofm fine-tuning run, or was edited)"


@pytest.mark.parametrize(("metadata", "reason"), [
    ({key: value for key, value in CLS_METADATA.items() if key != "model"},
     "its metadata has no 'model' entry" + NOT_WRITTEN_BY_SONOFM),
    ({key: value for key, value in CLS_METADATA.items() if key != "classes"},
     "its metadata has no 'classes' entry" + NOT_WRITTEN_BY_SONOFM),
    ({key: value for key, value in CLS_METADATA.items() if key != "task"},
     "its metadata has no 'task' entry" + NOT_WRITTEN_BY_SONOFM),
    ({}, "its metadata has no 'task' entry" + NOT_WRITTEN_BY_SONOFM),
    ({**CLS_METADATA, "task": '"seg"'}, "its metadata has no 'head' entry" + NOT_WRITTEN_BY_SONOFM),
    ({**CLS_METADATA, "classes": "5"}, "its metadata entry 'classes' is 5, expected list"),
    ({**CLS_METADATA, "img_size": '"big"'}, "its metadata entry 'img_size' is \"big\", expected int"),
    ({**CLS_METADATA, "model_args": "[1]"}, "its metadata entry 'model_args' is [1], expected dict"),
])
def test_model_file_with_incomplete_metadata_is_one_line_naming_file_and_key(metadata, reason, tmp_path, cli_error):
    run = finished_run(tmp_path / "run", metadata)
    for argv in commands_on(run, tmp_path):
        assert cli_error(argv) == f"sonofm: error: cannot read model file {run / 'model.safetensors'}: {reason}\n"
    assert not (tmp_path / "out").exists()


def test_damaged_best_checkpoint_is_one_line_naming_it(tmp_path):
    best = tmp_path / "checkpoints" / "best.ckpt"
    best.parent.mkdir()
    layer = torch.nn.Linear(2, 1)
    trained = {key: torch.full_like(value, 0.25) for key, value in layer.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": trained}, best)
    assert checkpoint_epoch(str(best), epochs=9) == 3.0
    load_best_weights(layer, str(best))
    assert torch.equal(layer.weight, torch.full((1, 2), 0.25)) and torch.equal(layer.bias, torch.full((1,), 0.25))

    best.write_bytes(np.random.default_rng(17).bytes(4096))
    for read in (lambda: checkpoint_epoch(str(best), epochs=9), lambda: load_best_weights(layer, str(best))):
        with pytest.raises(SonofmError) as refused:
            read()
        message = str(refused.value)
        assert message.startswith(f"cannot read checkpoint {best}: ") and "\n" not in message
        assert message.endswith("; pass --overwrite to start the run over")
        assert not any(word in message for word in UNSAFE_ADVICE)

    torch.save({"epoch": 3}, best)
    with pytest.raises(SonofmError, match=r"best\.ckpt is not a training checkpoint \(no 'state_dict' entry\)"):
        load_best_weights(layer, str(best))
