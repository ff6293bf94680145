"""Fixtures shared by the task tests."""

from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from sonofm.data.subset import copy_flat_subset


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


@pytest.fixture(scope="session")
def seg_subset():
    """``seg_subset(source, target, count)`` copies a spread subset of a flat segmentation data set."""
    return copy_flat_subset
