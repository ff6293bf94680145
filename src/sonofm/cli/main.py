"""Entry point of the ``sonofm`` command.

Every command module exposes ``register(subparsers)``, which adds its parsers and sets ``handler`` (a function taking
the parsed ``argparse.Namespace`` and returning an exit code) with ``set_defaults``. A :class:`SonofmError` raised
anywhere becomes one line on stderr and exit code 2; bugs keep their traceback. Every command also takes the
frame-sampling flags of :mod:`sonofm.cli.inputs` (``--frame-step``, ``--max-frames``) for cine loops and multi-frame
DICOM. The warnings of the image and DICOM readers (Pillow, pydicom) about damaged files ("Corrupt EXIF data", "End
of file reached before delimiter") are silenced: a file they cannot decode is reported by sonofm itself in one line
naming it, so ``data check`` prints one line per problem and nothing else. Ctrl-C (SIGINT) ends a command with one
line and exit code 130, also when Lightning has caught it first (it shuts training down and calls ``sys.exit(1)``);
the run folder keeps its last checkpoint, so rerunning resumes. A command whose optional library is not installed
(``sonofm sam`` without segment-anything) ends with one line naming the extra to install.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout

from sonofm import __version__
from sonofm.cli.inputs import add_frame_flags, apply_frame_flags
from sonofm.cli.options import ConfigPrinted
from sonofm.errors import SonofmError
from sonofm.extras import as_missing_extra

DECODER_MODULES = r"(PIL|pydicom)(\.|$)"  # libraries whose UserWarnings describe a damaged input file


def build_parser() -> argparse.ArgumentParser:
    from sonofm.cli import data as data_cli
    from sonofm.cli import demo, embed, evaluate, experiment, export, finetune, kfold, models, pretrain, sam, serve

    parser = argparse.ArgumentParser(prog="sonofm", description="Ultrasound foundation-model toolkit.")
    parser.add_argument("--version", action="version", version=f"sonofm {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (demo, pretrain, finetune, kfold, sam, evaluate, export, embed, serve, experiment, data_cli, models)
    for module in commands:
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
    with _watching_ctrl_c() as interrupted, _quiet_decoders(), _printing_on_rank_zero_only():
        try:
            apply_frame_flags(args)
            code = _run_handler(args)
        except SonofmError as error:
            print(f"sonofm: error: {_own_message(error)}", file=sys.stderr)
            code = 2
        except ConfigPrinted:
            code = 0
        except KeyboardInterrupt:
            return _interrupted()
        except SystemExit:
            if interrupted.is_set():  # Lightning's sys.exit(1) after its own handling of Ctrl-C
                return _interrupted()
            raise
        _leave_together()
        return code


def _run_handler(args: argparse.Namespace) -> int:
    """The command's exit code; an optional library missing from the install becomes a SonofmError naming its
    extra (``sonofm sam needs the `sam` extra: pip install 'sonofm[sam]'``)."""
    try:
        return int(args.handler(args) or 0)
    except ModuleNotFoundError as error:
        missing = as_missing_extra(error, f"sonofm {args.command}")
        if missing is None:
            raise
        raise missing from None


def _own_message(error: SonofmError) -> str:
    """The error's own text; one raised in a loader worker process arrives with the worker's traceback before it."""
    text = str(error)
    return text.rpartition(f"{type(error).__name__}: ")[2].strip() if "Original Traceback" in text else text


def _leave_together() -> None:
    """In a multi-process run, every rank leaves the command when rank 0 has finished its run folder (evaluation
    and export happen on rank 0 after training), so that a next command in the same processes (a k-fold study, a
    script) reads a complete folder."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _interrupted() -> int:
    print("sonofm: interrupted; rerun the same command to resume", file=sys.stderr)
    return 130


@contextmanager
def _printing_on_rank_zero_only() -> Iterator[None]:
    """Under a multi-process launch, the other ranks' standard output goes nowhere: each event is said once, by
    rank 0 (errors still reach standard error)."""
    launched = any(key in os.environ for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
    if not launched:
        yield
        return
    from sonofm.engine.distributed import is_rank_zero

    if is_rank_zero():
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as nowhere, redirect_stdout(nowhere):
        yield


@contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Ignore the ``UserWarning``s of Pillow and pydicom while the block runs (restored after); sonofm's readers
    turn an undecodable file into one SonofmError line of their own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=DECODER_MODULES)
        yield


@contextmanager
def _watching_ctrl_c() -> Iterator[threading.Event]:
    """An event set when SIGINT arrives while the block runs; the signal still raises KeyboardInterrupt as usual.

    Only Python's own handler in the main thread is wrapped (an ignored SIGINT stays ignored); it is restored after.
    """
    interrupted = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
        yield interrupted
        return

    def record_and_raise(signum: int, frame) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, record_and_raise)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
