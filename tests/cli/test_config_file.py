"""``--config FILE`` starts from a saved config (flags and ``--set`` override it); ``--print-config`` prints the
resolved config and exits; a bad file fails in one line naming it."""

import yaml

from sonofm.cli.main import main
from sonofm.runs.config import save_config
from sonofm.tasks.cls.finetune import ClsFinetuneConfig
from sonofm.tasks.mim.pretrain import MimPretrainConfig


def printed(capsys, argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_a_saved_config_is_reproduced_exactly_and_flags_override_it(tmp_path, capsys):
    config = ClsFinetuneConfig(data="/data/busi", model="resnet18", img_size=96, epochs=7, mode="partial")
    config.optim.lr = 3e-4
    save_config(config, tmp_path / "config.yaml")
    saved = (tmp_path / "config.yaml").read_text()
    base = ["finetune", "cls", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "config.yaml")]
    assert printed(capsys, [*base, "--print-config"]) == saved
    changed = yaml.safe_load(printed(capsys, [*base, "--epochs", "3", "--set", "optim.lr=0.01", "--print-config"]))
    assert (changed["epochs"], changed["optim"]["lr"], changed["img_size"], changed["mode"]) == (3, 0.01, 96, "partial")
    assert not (tmp_path / "run").exists()  # printing the config writes nothing


def test_pretraining_reads_its_own_config_too(tmp_path, capsys):
    save_config(MimPretrainConfig(data=["/a", "/b"], epochs=4), tmp_path / "mim.yaml")
    out = printed(capsys, ["pretrain", "mim", "--out", str(tmp_path / "r"), "--config", str(tmp_path / "mim.yaml"),
                           "--print-config"])
    assert yaml.safe_load(out)["data"] == ["/a", "/b"] and yaml.safe_load(out)["epochs"] == 4


def test_bad_config_files_fail_in_one_line(tmp_path, cli_error):
    (tmp_path / "typo.yaml").write_text("data: /d\nepochz: 3\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    base = ["finetune", "cls", "--out", str(tmp_path / "run"), "--config"]
    typo = cli_error([*base, str(tmp_path / "typo.yaml")])
    assert f"config {tmp_path / 'typo.yaml'}: unknown config key 'epochz'" in typo
    assert "must hold key: value pairs, found a list" in cli_error([*base, str(tmp_path / "list.yaml")])
    assert "cannot read config" in cli_error([*base, str(tmp_path / "missing.yaml")])
    assert "--data is required" in cli_error(["finetune", "cls", "--out", str(tmp_path / "run")])
