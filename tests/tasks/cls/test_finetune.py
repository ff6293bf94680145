"""End-to-end classification fine-tuning on phantom data: learning, run folder contract, exact resume."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from sonofm.errors import SonofmError
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def phantom_cls(phantom_set):
    return phantom_set(n_per_class=160, size=64, seed=1) / "cls"


def small_config(data, **changes) -> ClsFinetuneConfig:
    config = ClsFinetuneConfig(
        data=str(data), model="resnet18", img_size=64, epochs=10, batch_size=32, num_workers=0, progress=False,
    )
    config.optim.lr = 1e-3
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def phantom_run(phantom_cls, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "phantom"
    metrics = finetune_classifier(small_config(phantom_cls), out, echo=quiet)
    return out, metrics


@pytest.mark.slow
def test_small_model_learns_phantom_classes(phantom_run):
    _, metrics = phantom_run
    assert metrics["test/accuracy"] >= 0.8
    assert metrics["test/balanced_accuracy"] >= 0.8
    assert metrics["test/auroc"] >= 0.95


@pytest.mark.slow
def test_run_folder_contract(phantom_run):
    out, metrics = phantom_run
    for name in ("config.yaml", "split.csv", "log.csv", "metrics.json", "model.safetensors", "checkpoints/last.ckpt",
                 "confusion_matrix_test.png", "per_class_test.csv", "training_curves.png", "param_groups.csv"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics, nan_ok=True)
    for key in ("test/accuracy", "test/balanced_accuracy", "test/macro_f1", "test/auroc", "val/balanced_accuracy"):
        assert 0.0 <= saved[key] <= 1.0
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 10 and rows[0].startswith("epoch,step,lr")
    assert sorted(load_file(out / "model.safetensors")) and not list(out.glob("**/*.tmp"))


@pytest.mark.slow
def test_finished_run_is_not_overwritten(phantom_run, phantom_cls):
    out, _ = phantom_run
    before = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(SonofmError, match="is finished; pass --overwrite"):
        finetune_classifier(small_config(phantom_cls), out, echo=quiet)
    assert (out / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_interrupted_run_resumes_exactly(phantom_cls, tmp_path, crash_at_epoch, assert_same_weights):
    config = small_config(phantom_cls, epochs=3, train_fraction=0.5)
    finetune_classifier(config, tmp_path / "straight", echo=quiet)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune_classifier(config, tmp_path / "resumed", echo=quiet, callbacks=[crash_at_epoch(2)])
    assert (tmp_path / "resumed/checkpoints/last.ckpt").is_file() and not (tmp_path / "resumed/metrics.json").exists()
    finetune_classifier(config, tmp_path / "resumed", echo=quiet)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    assert (tmp_path / "resumed/split.csv").read_text() == (tmp_path / "straight/split.csv").read_text()
    assert (tmp_path / "resumed/log.csv").read_text().count("\n") == 1 + 3


def test_train_fraction_keeps_fewer_training_images(phantom_cls, tmp_path):
    config = small_config(phantom_cls, epochs=1, train_fraction=0.25)
    finetune_classifier(config, tmp_path / "run", echo=quiet)
    rows = (tmp_path / "run/split.csv").read_text().splitlines()[1:]
    train = [r for r in rows if r.split(",")[1] == "train"]
    assert 0.15 * 640 <= len(train) <= 0.3 * 0.75 * 640 + 8


class WeightsAtStart(L.Callback):
    """Keeps a copy of the classifier's tensors as training starts, before any optimiser step."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.tensors = {key: value.clone() for key, value in pl_module.model.state_dict().items()}


def changed_tensors(config: ClsFinetuneConfig, out: Path) -> tuple[set[str], set[str]]:
    """Fine-tune into ``out``; (names of the saved tensors that differ from the start, names of those that do not)."""
    start = WeightsAtStart()
    finetune_classifier(config, out, echo=quiet, callbacks=[start])
    trained = load_file(out / "model.safetensors")
    assert trained.keys() == start.tensors.keys()
    changed = {key for key, value in trained.items() if not torch.equal(value, start.tensors[key])}
    return changed, trained.keys() - changed


def test_linear_mode_trains_only_the_head(phantom_cls, tmp_path):
    config = small_config(phantom_cls, epochs=1, train_fraction=0.25, mode="linear", model="usfm_vit_tiny_patch16",
                          model_args={"depth": 2})
    changed, kept = changed_tensors(config, tmp_path / "run")
    assert changed == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert all(key.startswith("backbone.") for key in kept)  # the whole backbone, bit for bit


def test_partial_mode_trains_only_layer4_and_head(phantom_cls, tmp_path):
    config = small_config(phantom_cls, epochs=1, train_fraction=0.25, mode="partial")
    changed, kept = changed_tensors(config, tmp_path / "run")
    # layer4 trains in train mode (its BatchNorm statistics move too); the frozen stages' statistics stay as they were
    trained_part = ("backbone.layer4.", "fc_norm.", "head.")
    assert changed == {key for key in changed | kept if key.startswith(trained_part)}
    assert {"backbone.layer4.0.bn1.running_mean", "backbone.layer4.1.bn2.weight"} <= changed
    assert {"backbone.conv1.weight", "backbone.bn1.running_mean", "backbone.layer3.1.bn2.running_var"} <= kept


def test_gradient_accumulation_halves_optimizer_steps(phantom_cls, tmp_path):
    steps = {}
    for accumulate in (1, 2):
        config = small_config(phantom_cls, epochs=1, train_fraction=0.25, accumulate=accumulate)
        finetune_classifier(config, tmp_path / f"acc{accumulate}", echo=quiet)
        last_row = (tmp_path / f"acc{accumulate}/log.csv").read_text().strip().splitlines()[-1]
        steps[accumulate] = int(last_row.split(",")[1])
    assert steps[2] == (steps[1] + 1) // 2
