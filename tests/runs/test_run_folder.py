from dataclasses import dataclass

import pytest

from sonofm.errors import SonofmError
from sonofm.atomic import atomic_write, atomic_write_text
from sonofm.runs.config import save_config
from sonofm.runs.run_folder import prepare_run


@dataclass
class Config:
    data: str = "d"
    epochs: int = 2
    num_workers: int = 0


def test_new_run_then_resume_then_finished(tmp_path):
    run, resuming = prepare_run(tmp_path / "run", Config())
    assert not resuming and not run.path.exists()
    save_config(Config(), run.config)
    run2, resuming = prepare_run(tmp_path / "run", Config(num_workers=4))  # resumable keys may change
    assert resuming and run2 == run
    atomic_write_text(run.metrics, "{}")
    with pytest.raises(SonofmError, match="is finished; pass --overwrite"):
        prepare_run(tmp_path / "run", Config())
    run3, resuming = prepare_run(tmp_path / "run", Config(), overwrite=True)
    assert not resuming and not run3.metrics.exists()


def test_different_config_is_refused_naming_the_key(tmp_path):
    run, _ = prepare_run(tmp_path / "run", Config())
    save_config(Config(), run.config)
    with pytest.raises(SonofmError, match="epochs: 2 then, 5 now"):
        prepare_run(tmp_path / "run", Config(epochs=5))


def test_foreign_folder_is_never_deleted(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "precious.txt").write_text("x")
    with pytest.raises(SonofmError, match="not a sonofm run"):
        prepare_run(folder, Config())
    with pytest.raises(SonofmError, match="not a sonofm run folder"):
        prepare_run(folder, Config(), overwrite=True)
    assert (folder / "precious.txt").read_text() == "x"


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def failing(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
