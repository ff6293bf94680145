"""What every pretraining command shares: the config fields for data, schedule bounds and hardware."""

from __future__ import annotations

from dataclasses import dataclass, field

from sonofm.errors import SonofmError
from sonofm.tasks.hardware import HardwareConfig
from sonofm.tasks.precision import PRECISIONS


@dataclass
class PretrainingConfig(HardwareConfig):
    """Options shared by pretraining methods (each method's config adds its own).

    ``epochs`` or ``max_steps`` (optimiser steps; wins when set) bound training; ``checkpoint_every`` is in
    optimiser steps (``last.ckpt`` is also written at every epoch's end).
    """

    data: list[str] = field(default_factory=list)
    model: str = ""
    img_size: int = 224
    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 64
    accumulate: int = 1
    seed: int = 0
    checkpoint_every: int = 500

    def checks(self) -> list[tuple[bool, str]]:
        """``(ok, message)`` pairs; a method's config extends the list."""
        return [
            (bool(self.data), "--data needs at least one folder"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.accumulate >= 1, f"--accumulate must be >= 1, got {self.accumulate}"),
            (self.img_size >= 16 and self.img_size % 16 == 0, f"--img-size must be a multiple of 16, got {self.img_size}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
        ]

    def validate(self) -> None:
        """Raise SonofmError for the first value outside its range."""
        for ok, message in self.checks():
            if not ok:
                raise SonofmError(message)
