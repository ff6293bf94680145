"""Turning parsed flags into a run config in one pass: a saved config file, a preset, flag values, then ``--set``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TypeVar

import yaml

from sonofm.runs.config import Override, config_to_dict, load_config, parse_override, resolve_config

T = TypeVar("T")

# The hardware flags every training command shares; flag name -> config key.
HARDWARE_FLAGS = {
    "precision": "precision", "num_workers": "num_workers", "accelerator": "accelerator", "devices": "devices",
    "strategy": "strategy", "num_nodes": "num_nodes", "logger": "loggers",
}


def add_hardware_flags(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--num-workers``, ``--accelerator``, ``--devices``, ``--strategy``, ``--num-nodes`` and
    ``--logger``."""
    parser.add_argument("--precision", choices=["auto", "bf16", "32"], help="auto: bf16 autocast where the hardware is fast")
    parser.add_argument("--num-workers", type=int, help="data-loading worker processes per device (default: the machine's cores shared among the "
                        "devices, less one each, at most 8)")
    parser.add_argument("--accelerator", help="auto (default), cpu or gpu")
    parser.add_argument("--devices", help="devices per machine (default 1)")
    parser.add_argument("--strategy", help="Lightning strategy: auto (default), ddp, fsdp, ...")
    parser.add_argument("--num-nodes", type=int, help="machines for multi-node training (default 1)")
    add_logger_flag(parser)


def add_logger_flag(parser: argparse.ArgumentParser) -> None:
    """``--logger NAME[,NAME]``, repeatable: the names gather into one list (config key ``loggers``)."""
    parser.add_argument("--logger", action="extend", type=_names, metavar="NAME[,NAME]",
                        help="experiment loggers beside log.csv, writing under OUT/logs: csv, tensorboard, wandb "
                        "(offline unless WANDB_MODE or WANDB_API_KEY is set) or mlflow (a local store unless "
                        "MLFLOW_TRACKING_URI is set); comma-separated or repeated")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_output_flags(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--out``, ``--overwrite``, repeatable ``--set KEY=VALUE`` and ``--no-progress``."""
    parser.add_argument("--out", required=True, help=f"{what} folder")
    parser.add_argument("--overwrite", action="store_true", help=f"replace a finished or different {what} in --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any config key, e.g. {example} (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--config", metavar="FILE", help=f"start from a saved config.yaml (e.g. another {what}'s); "
                        "--preset, flags and --set override it")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")


class ConfigPrinted(Exception):
    """``--print-config`` printed the resolved config: the command stops there, successfully."""


def config_from_args(config: T, args: argparse.Namespace, flags: dict[str, str],
                     preset: Sequence[Override] = ()) -> T:
    """``config`` (or the ``--config`` file's) after one override pass: ``preset``, then the given flags, then
    ``args.overrides`` (later wins). With ``--print-config`` the result is printed and :class:`ConfigPrinted` raised.

    ``flags`` maps flag names to config keys (dotted for sections). A flag's value, already typed by argparse, is
    assigned as is; ``--set`` values are parsed as YAML. Both are type-checked against the config's fields.
    """
    if getattr(args, "config", None):
        config = load_config(type(config), args.config)
    resolved = resolve_config(config, [*preset, *flag_overrides(args, flags), *map(parse_override, args.overrides)])
    if getattr(args, "print_config", False):
        print(yaml.safe_dump(config_to_dict(resolved), sort_keys=False), end="")
        raise ConfigPrinted
    return resolved


def flag_overrides(args: argparse.Namespace, flags: dict[str, str]) -> list[Override]:
    """The given flags (and ``--no-progress``) as typed overrides, in ``flags`` order; flags not given are skipped."""
    overrides = [
        Override(key, getattr(args, flag), f"--{flag.replace('_', '-')}")
        for flag, key in flags.items() if getattr(args, flag) is not None
    ]
    if args.no_progress:
        overrides.append(Override("progress", False, "--no-progress"))
    return overrides
