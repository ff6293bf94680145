"""Progress in a log (standard error not a terminal): plain lines at each tenth, one line per training epoch; no
carriage returns."""

import io

from sonofm.engine.epoch_lines import EpochLines, training_progress
from sonofm.progress import LogLinesBar, progress_bar


def test_a_bar_in_a_log_prints_a_line_per_tenth_and_no_carriage_return():
    log = io.StringIO()
    with LogLinesBar(total=200, desc="pack", unit="img", file=log) as bar:
        for _ in range(200):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 11 and lines[0].startswith("pack:   0%") and lines[-1].startswith("pack: 100%")
    assert "200/200" in lines[-1]


def test_a_bar_without_a_total_prints_its_first_and_last_line():
    log = io.StringIO()
    assert list(LogLinesBar((number for number in range(5)), desc="scan", file=log)) == [0, 1, 2, 3, 4]
    assert "\r" not in log.getvalue() and log.getvalue().splitlines()[-1].startswith("scan: 5")


def test_pytest_output_is_not_a_terminal_so_logs_get_lines(capsys):
    assert isinstance(progress_bar(range(3), disable=True), LogLinesBar)
    assert isinstance(training_progress(), EpochLines)


def test_training_in_a_log_prints_one_line_per_epoch(phantom_set, tmp_path, capsys):
    from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier

    data = phantom_set(n_per_class=40, size=32, seed=2) / "cls"  # enough groups for a validation split
    config = ClsFinetuneConfig(data=str(data), model="resnet18", img_size=32, epochs=2, batch_size=32, num_workers=0)
    finetune_classifier(config, tmp_path / "run", echo=lambda line: None)
    err = capsys.readouterr().err
    assert "\r" not in err
    epochs = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(" (")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert "train/loss" in epochs[0] and "val/balanced_accuracy" in epochs[0]
