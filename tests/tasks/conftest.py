"""Fixtures shared by the task tests."""

import lightning as L
import pytest


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
