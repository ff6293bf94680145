"""Fixtures shared by the task tests."""

import csv
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file


class CrashAtEpoch(L.Callback):
    """Raises ``RuntimeError("simulated crash")`` when training reaches ``epoch``, after earlier checkpoints."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.fixture
def crash_at_epoch():
    """``crash_at_epoch(n)`` -> a callback that interrupts training at the start of epoch ``n``."""
    return CrashAtEpoch


def _assert_same_weights(first: Path, second: Path) -> None:
    """The ``model.safetensors`` of run folders ``first`` and ``second`` hold the same, bit-identical tensors."""
    expected, found = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert expected.keys() == found.keys()
    for key in expected:
        torch.testing.assert_close(found[key], expected[key], rtol=0, atol=0, msg=key)


@pytest.fixture
def assert_same_weights():
    """``assert_same_weights(run_a, run_b)``: an interrupted-and-resumed run ended with the uninterrupted weights."""
    return _assert_same_weights


def copy_seg_subset(source: Path, target: Path, count: int) -> Path:
    """Every k-th labels.csv row of a flat segmentation set (all groups stay represented), copied with its image and
    mask into ``target``."""
    with (source / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = rows[:: max(1, len(rows) // count)][:count]
    for folder in ("images", "masks"):
        (target / folder).mkdir(parents=True)
        for row in kept:
            shutil.copy(source / folder / f"{row['name']}.png", target / folder / f"{row['name']}.png")
    with (target / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return target


@pytest.fixture(scope="session")
def seg_subset():
    """``seg_subset(source, target, count)`` copies a spread subset of a flat segmentation data set."""
    return copy_seg_subset
