"""Experiment loggers (``--logger``): TensorBoard events of a fine-tuning run beside an unchanged ``log.csv``, a
resumed run appending to the same folder, the flag and config key, and one line naming the extra when a package is
missing."""

import csv
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sonofm.cli.main import main
from sonofm.engine.loggers import PACKAGES
from sonofm.runs.config import config_to_dict
from sonofm.runs.run_folder import prepare_run
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier

EPOCHS = 3


@pytest.fixture(scope="module")
def cls_data(phantom_set) -> Path:
    return phantom_set(n_per_class=8, size=48, seed=3, frames_per_group=1) / "cls"


def finetune_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "cls", "--data", str(data), "--model", "usfm_vit_tiny_patch16", "--set",
            "model_args={depth: 1}", "--img-size", "32", "--epochs", str(EPOCHS), "--batch-size", "8", "--precision",
            "32", "--num-workers", "0", "--accelerator", "cpu", "--no-progress", *extra, "--out", str(out)]


def scalar_steps(folder: Path) -> dict[str, list[int]]:
    """Every scalar tag in the TensorBoard event files of ``folder`` -> the steps it was logged at."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(cls_data, tmp_path_factory) -> tuple[Path, Path]:
    """The same fine-tuning run without and with ``--logger tensorboard``."""
    work = tmp_path_factory.mktemp("loggers")
    assert main(finetune_argv(cls_data, work / "plain")) == 0
    assert main(finetune_argv(cls_data, work / "logged", "--logger", "tensorboard")) == 0
    return work / "plain", work / "logged"


def test_tensorboard_holds_train_scalars_per_step_and_val_scalars_per_epoch(runs):
    _, logged = runs
    steps = scalar_steps(logged / "logs" / "tensorboard")
    epoch_ends = [int(row["step"]) - 1 for row in log_rows(logged)]  # Lightning logs an epoch at its last step
    assert len(epoch_ends) == EPOCHS
    assert steps["train/loss_step"] == list(range(epoch_ends[-1] + 1))
    for tag in ("train/loss_epoch", "train/accuracy", "val/loss", "val/accuracy", "val/balanced_accuracy"):
        assert steps[tag] == epoch_ends, tag
    assert not [tag for tag in steps if tag.startswith("test/")]  # the final scores go to metrics.json only
    assert (logged / "logs" / "tensorboard" / "hparams.yaml").is_file()


def test_log_csv_is_unchanged_by_a_logger(runs):
    plain, logged = runs
    assert (logged / "log.csv").read_text() == (plain / "log.csv").read_text()
    assert not (plain / "logs").exists()


def test_a_resumed_run_appends_to_the_same_tensorboard_folder(cls_data, tmp_path):
    class CrashMidEpoch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.current_epoch == 1 and batch_idx == 1:
                raise RuntimeError("simulated crash")

    config = ClsFinetuneConfig(data=str(cls_data), model="usfm_vit_tiny_patch16", model_args={"depth": 1}, img_size=32,
                               epochs=EPOCHS, batch_size=8, precision="32", num_workers=0, accelerator="cpu",
                               progress=False, loggers=["tensorboard"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune_classifier(config, tmp_path / "run", echo=lambda _: None, callbacks=[CrashMidEpoch()])
    finetune_classifier(config, tmp_path / "run", echo=lambda _: None)
    logs = tmp_path / "run" / "logs"
    assert [path.name for path in logs.iterdir()] == ["tensorboard"]
    assert len(list((logs / "tensorboard").glob("events.out.tfevents.*"))) == 2
    steps = scalar_steps(logs / "tensorboard")
    epoch_ends = [int(row["step"]) - 1 for row in log_rows(tmp_path / "run")]
    assert steps["train/loss_step"] == list(range(epoch_ends[-1] + 1))  # the crashed epoch's steps once
    assert steps["val/balanced_accuracy"] == epoch_ends


def test_loggers_may_change_when_a_run_resumes(tmp_path):
    config = ClsFinetuneConfig(data="x", model="resnet18", img_size=64)
    saved = config_to_dict(config)
    del saved["loggers"]  # a run started before the key existed
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    config.loggers = ["tensorboard"]
    _, resuming = prepare_run(tmp_path / "run", config)
    assert resuming


@pytest.mark.parametrize(("flags", "expected"), [
    (["--logger", "tensorboard,csv", "--logger", "mlflow"], "loggers:\n- tensorboard\n- csv\n- mlflow\n"),
    (["--set", "loggers=[csv]"], "loggers:\n- csv\n"),
    ([], "loggers: []\n"),
])
def test_logger_flag_and_config_key(cls_data, tmp_path, capsys, flags, expected):
    assert main(finetune_argv(cls_data, tmp_path / "run", *flags, "--print-config")) == 0
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["pretrain", "mim", "--data", "x", "--out", "o"],
    ["pretrain", "aclus", "--data", "x", "--masks", "m", "--out", "o"],
    ["sam", "finetune", "--data", "x", "--out", "o"],
    ["sam", "train-prompter", "--run", "r", "--out", "o"],
    ["finetune", "seg", "--data", "x", "--out", "o"],
    ["finetune", "enhance", "--data", "x", "--degradation", "blur", "--out", "o"],
    ["kfold", "--data", "x", "--out", "o"],
    ["experiment", "label-efficiency", "--data", "x", "--weights", "w", "--out", "o"],
    ["experiment", "compare", "--data", "x", "--init", "scratch", "--init", "weights:w", "--out", "o"],
])
def test_every_training_command_takes_the_flag(argv, capsys):
    assert main([*argv, "--logger", "tensorboard", "--print-config"]) == 0
    assert "- tensorboard\n" in capsys.readouterr().out


def test_an_unknown_logger_is_one_line(cls_data, tmp_path, cli_error):
    message = cli_error(finetune_argv(cls_data, tmp_path / "run", "--logger", "neptune"))
    assert "--logger must be among csv, tensorboard, wandb, mlflow, got 'neptune'" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "mlflow"])
def test_a_missing_logger_package_is_one_line_naming_the_extra(cls_data, tmp_path, cli_error, monkeypatch, name):
    monkeypatch.setitem(sys.modules, PACKAGES[name], None)  # makes `import <package>` fail as if not installed
    message = cli_error(finetune_argv(cls_data, tmp_path / "run", "--logger", f"csv,{name}"))
    assert message == f"sonofm: error: --logger {name} needs the `{name}` extra: pip install 'sonofm[{name}]'\n"
    assert not (tmp_path / "run").exists()
