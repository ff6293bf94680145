"""The hardware and display options every training command shares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HardwareConfig:
    """Precision (``auto``: bf16 autocast where fast), data-loading workers, Lightning's accelerator, devices,
    strategy and nodes, and whether to show progress bars."""

    precision: str = "auto"
    num_workers: int = 1
    accelerator: str = "auto"
    devices: str = "1"
    strategy: str = "auto"
    num_nodes: int = 1
    progress: bool = True
