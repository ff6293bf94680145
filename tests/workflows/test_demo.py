"""Demo data resolution and the printed summary (the training itself: tests/cli/test_demo_command.py)."""

import pytest

from sonofm.data.layouts import load_index
from sonofm.errors import SonofmError
from sonofm.runs.run_folder import RunFolder
from sonofm.workflows.demo import DemoConfig, _resolve_data, _Stage, format_summary, quick_config


def test_folder_with_cls_and_seg_uses_both(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "seg").mkdir()
    assert _resolve_data(DemoConfig(data=str(tmp_path)), tmp_path / "o", print) == (tmp_path / "cls", tmp_path / "seg")


def test_class_folder_dataset_skips_seg_unless_given(tmp_path):
    seg = tmp_path / "myseg"
    seg.mkdir()
    assert _resolve_data(DemoConfig(data=str(tmp_path)), tmp_path / "o", print) == (tmp_path, None)
    assert _resolve_data(DemoConfig(data=str(tmp_path), seg_data=str(seg)), tmp_path / "o", print) == (tmp_path, seg)


def test_missing_folders_are_errors(tmp_path):
    with pytest.raises(SonofmError, match="--data is not a folder: .*nope"):
        _resolve_data(DemoConfig(data=str(tmp_path / "nope")), tmp_path / "o", print)
    with pytest.raises(SonofmError, match="--seg-data is not a folder: .*gone"):
        _resolve_data(DemoConfig(data=str(tmp_path), seg_data=str(tmp_path / "gone")), tmp_path / "o", print)


def test_phantom_has_one_frame_per_subject_by_default(tmp_path):
    config = DemoConfig(phantom_per_class=3, img_size=64)
    cls, seg = _resolve_data(config, tmp_path, lambda line: None)
    index = load_index(cls, task="cls")
    groups = [sample.group for sample in index.samples]
    assert (cls, seg) == (tmp_path / "phantom" / "cls", tmp_path / "phantom" / "seg")
    assert index.group_column == "group" and len(groups) == 12 and len(set(groups)) == 12


def test_quick_config_is_smaller():
    full, quick = DemoConfig(), quick_config(DemoConfig())
    assert quick.phantom_per_class < full.phantom_per_class and quick.pretrain_epochs < full.pretrain_epochs


def test_summary_lists_both_inits(tmp_path):
    run = RunFolder(tmp_path)
    stages = {
        "cls_pretrained": _Stage("cls_pretrained", run, {"test/accuracy": 0.75}, 1.0),
        "cls_scratch": _Stage("cls_scratch", run, {"test/accuracy": 0.5}, 1.0),
    }
    lines = format_summary(stages).splitlines()
    assert lines[0].split()[:3] == ["cls", "(test)", "accuracy"]
    assert lines[1].split()[:2] == ["pretrained", "0.7500"] and lines[2].split()[:2] == ["scratch", "0.5000"]
    assert "seg" not in format_summary(stages)
