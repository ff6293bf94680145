"""Frame-sampling flags shared by every command that reads cine loops or multi-frame DICOM."""

from __future__ import annotations

import argparse

from sonofm.data.frames import FrameSampling, set_default_sampling


def add_frame_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--frame-step N`` and ``--max-frames N``."""
    parser.add_argument("--frame-step", type=int, default=1, metavar="N",
                        help="use every N-th frame of cine loops and multi-frame DICOM (default 1: all)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="use at most N sampled frames per cine loop or multi-frame DICOM (default: no limit)")


def apply_frame_flags(args: argparse.Namespace) -> FrameSampling:
    """Set the process-wide frame sampling from the parsed flags and return it."""
    sampling = FrameSampling(step=args.frame_step, max_frames=args.max_frames)
    set_default_sampling(sampling)
    return sampling
