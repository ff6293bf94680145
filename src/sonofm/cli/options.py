"""Turning parsed flags into a run config: flag values first, then ``--set key=value`` overrides."""

from __future__ import annotations

import argparse
from typing import TypeVar

from sonofm.runs.config import apply_overrides

T = TypeVar("T")


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
