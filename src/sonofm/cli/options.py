"""Turning parsed flags into a run config: flag values first, then ``--set key=value`` overrides."""

from __future__ import annotations

import argparse
from typing import TypeVar

from sonofm.runs.config import apply_overrides

T = TypeVar("T")

# The hardware flags every training command shares; flag name -> config key.
HARDWARE_FLAGS = {
    "precision": "precision", "num_workers": "num_workers", "accelerator": "accelerator", "devices": "devices",
    "strategy": "strategy", "num_nodes": "num_nodes",
}


def add_hardware_flags(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--num-workers``, ``--accelerator``, ``--devices``, ``--strategy``, ``--num-nodes``."""
    parser.add_argument("--precision", choices=["auto", "bf16", "32"], help="auto: bf16 autocast where the hardware is fast")
    parser.add_argument("--num-workers", type=int, help="data-loading worker processes per device (default 1)")
    parser.add_argument("--accelerator", help="auto (default), cpu or gpu")
    parser.add_argument("--devices", help="devices per machine (default 1)")
    parser.add_argument("--strategy", help="Lightning strategy: auto (default), ddp, fsdp, ...")
    parser.add_argument("--num-nodes", type=int, help="machines for multi-node training (default 1)")


def add_output_flags(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--out``, ``--overwrite``, repeatable ``--set KEY=VALUE`` and ``--no-progress``."""
    parser.add_argument("--out", required=True, help=f"{what} folder")
    parser.add_argument("--overwrite", action="store_true", help=f"replace a finished or different {what} in --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any config key, e.g. {example} (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(config: T, args: argparse.Namespace, flags: dict[str, str]) -> T:
    """Copy the given flags into ``config`` and apply ``args.overrides``.

    ``flags`` maps flag names to config keys (dotted for sections). Strings and lists (paths, names) are set
    verbatim; other values go through the override parser so they are type-checked like ``--set``.
    """
    overrides = []
    for flag, key in flags.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if isinstance(value, (str, list)) and "." not in key:
            setattr(config, key, value)
        else:
            overrides.append(f"{key}={value}")
    if args.no_progress:
        config.progress = False
    return apply_overrides(config, [*overrides, *args.overrides])
