"""Entry point of the ``sonofm`` command.

Every command module exposes ``register(subparsers)``, which adds its parsers and sets ``handler`` (a function taking
the parsed ``argparse.Namespace`` and returning an exit code) with ``set_defaults``. A :class:`SonofmError` raised
anywhere becomes one line on stderr and exit code 2; bugs keep their traceback. Every command also takes the
frame-sampling flags of :mod:`sonofm.cli.inputs` (``--frame-step``, ``--max-frames``) for cine loops and multi-frame
DICOM.
"""

from __future__ import annotations

import argparse
import sys

from sonofm import __version__
from sonofm.cli.inputs import add_frame_flags, apply_frame_flags
from sonofm.errors import SonofmError


def build_parser() -> argparse.ArgumentParser:
    from sonofm.cli import data as data_cli
    from sonofm.cli import demo, embed, evaluate, experiment, export, finetune, kfold, models, pretrain, sam

    parser = argparse.ArgumentParser(prog="sonofm", description="Ultrasound foundation-model toolkit.")
    parser.add_argument("--version", action="version", version=f"sonofm {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, pretrain, finetune, kfold, sam, evaluate, export, embed, experiment, data_cli, models):
        module.register(subparsers)
    for command in _leaf_parsers(parser):
        add_frame_flags(command)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run a command (those without sub-commands of their own)."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    return [leaf for group in groups for child in dict.fromkeys(group.choices.values()) for leaf in _leaf_parsers(child)]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_frame_flags(args)
        return int(args.handler(args) or 0)
    except SonofmError as error:
        print(f"sonofm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sonofm: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
