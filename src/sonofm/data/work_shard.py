"""Splitting work over processes that run at once (``--shard K/N``), as ``sam automask`` and ``data pack`` do."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sonofm.errors import SonofmError


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: positions ``index, index + count, ...`` of the sorted image list."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 0 <= K < N."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise SonofmError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from None
        if not 0 <= index < count:
            raise SonofmError(f"--shard {text}: need 0 <= K < N")
        return cls(index, count)

    @classmethod
    def from_environment(cls) -> Shard:
        """This process's rank and the world size under torchrun / DDP launchers; one shard otherwise."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def part_name(self) -> str:
        return f"shard-{self.index}-of-{self.count}.csv"
