"""MIM pretraining throughput and peak memory of a MaskedImageModel (USFM dual masking), fp32 against bf16 autocast.

One training step = ``MaskedImageModel`` forward (band-stop FFT filter, random block mask, encoder, pixel-shuffle
decoder, pixel and frequency losses) + backward + AdamW step (``build_optimizer`` with pretraining's settings: no layer
decay) + ``zero_grad``, on a fixed random batch; the masks are re-drawn every step, as in training. The model is
built as ``sonofm pretrain mim`` builds it (``build_mim_model``: USFM ViTs with one shared relative position table).
Each precision runs in its own subprocess so that its peak memory is its own; that subprocess also times a large GEMM
in the same dtype (the attainable matmul rate of this machine) and counts the model's FLOPs per step with
``FlopCounterMode``. The parent prints one JSON line per figure, ratios included.

    .venv/bin/python benchmarks/mim_throughput.py            # ViT-B/16, 224 px, both branches, CPU or CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import (  # noqa: E402
    PRECISIONS,
    Loss,
    TrainingSettings,
    TrainMeasurement,
    add_training_flags,
    add_worker_flag,
    measure_in_subprocess,
    speedup_line,
    time_training_steps,
    training_figure_lines,
)

DEFAULT_MASK_PATCH = 32  # MimConfig's default: 32 px blocks
CPU_STEPS = 10  # default timed steps on CPU


@dataclass
class Settings(TrainingSettings):
    """What one run measures; the defaults depend on the device (see ``parse_settings``).

    ``spatial`` / ``frequency``: which masking branches are on (``--no-spatial`` / ``--no-frequency`` turn one off).
    """

    mask_patch: int
    spatial: bool
    frequency: bool

    def mim_config(self):
        """The ``MimConfig`` of this run: pretraining's defaults with this run's mask block size and branches."""
        from sonofm.methods.mim.model import MimConfig

        return MimConfig(mask_patch=self.mask_patch, spatial=self.spatial, frequency=self.frequency)


def build_model(settings: Settings, device: torch.device):
    """``MaskedImageModel`` and its AdamW, exactly as ``sonofm pretrain mim`` builds them (drop path 0.1, shared
    relative position table for USFM ViTs, lr 2e-4, weight decay 0.05, no layer decay)."""
    from sonofm.engine.optim import build_optimizer
    from sonofm.tasks.mim.pretrain import MimPretrainConfig, build_mim_model

    config = MimPretrainConfig(model=settings.model, img_size=settings.img_size, mim=settings.mim_config())
    model = build_mim_model(config).to(device)
    return model, build_optimizer(model, config.optim)


def build_training(settings: Settings, device: torch.device) -> tuple[Loss, torch.optim.Optimizer]:
    """The model and its AdamW on ``device``: the pretraining loss of a fixed random batch, and the optimiser."""
    model, optimizer = build_model(settings, device)
    model.train()
    images = torch.randn(settings.batch_size, 3, settings.img_size, settings.img_size, device=device)
    # Fresh band-stop and block masks from the global RNG at every call, as in training.
    return (lambda: model(images)["loss"]), optimizer


def measure(settings: Settings, precision: str) -> TrainMeasurement:
    """GEMM rate, FLOPs per step (first warmup step) and timed pretraining steps for one precision."""
    return time_training_steps(settings, precision, build_training)


def figure_lines(settings: Settings, results: dict[str, TrainMeasurement]) -> list[dict]:
    """One JSON-ready dict per figure: per-precision figures, then the bf16/fp32 ratio; all from the same run."""
    common = {
        "benchmark": "mim_throughput",
        "model": settings.model,
        "img_size": settings.img_size,
        "batch_size": settings.batch_size,
        "mask_patch": settings.mask_patch,
        "spatial": settings.spatial,
        "frequency": settings.frequency,
        "device": settings.device,
        "threads": settings.threads,
    }
    lines = training_figure_lines(common, results, settings.batch_size, settings.gemm_size, settings.device)
    return [*lines, speedup_line(common, results, settings.batch_size)]


def bool_text(text: str) -> bool:
    """``"True"`` / ``"False"`` (how ``settings_flags`` writes booleans) -> bool, for argparse."""
    if text not in ("True", "False"):
        raise argparse.ArgumentTypeError(f"expected True or False, got '{text}'")
    return text == "True"


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, str | None]:
    """Command-line flags -> settings (device-dependent defaults filled in) and the worker precision, if any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_flags(parser, CPU_STEPS)
    parser.add_argument("--mask-patch", type=int, default=DEFAULT_MASK_PATCH,
                        help=f"side of the hidden blocks in px (default {DEFAULT_MASK_PATCH}); must divide the image "
                             "size and be a multiple of the encoder's patch size")
    parser.add_argument("--no-spatial", dest="spatial", action="store_false",
                        help="no block masking: measure the frequency (band-stop) branch alone")
    parser.add_argument("--no-frequency", dest="frequency", action="store_false",
                        help="no band-stop filter and no frequency loss: measure the spatial branch alone")
    # The worker's spelling of the two switches: ``worker_args`` writes them as ``--spatial True`` / ``--frequency
    # False`` (``settings_flags``).
    parser.add_argument("--spatial", dest="spatial", type=bool_text, help=argparse.SUPPRESS)
    parser.add_argument("--frequency", dest="frequency", type=bool_text, help=argparse.SUPPRESS)
    add_worker_flag(parser, tuple(PRECISIONS))
    args = parser.parse_args(argv)
    settings = Settings.from_flags(parser, args, CPU_STEPS, mask_patch=args.mask_patch, spatial=args.spatial,
                                   frequency=args.frequency)
    if not (settings.spatial or settings.frequency):
        parser.error("--no-spatial and --no-frequency together leave nothing to train")
    from sonofm.errors import SonofmError
    from sonofm.models import patch_size_of

    try:  # fail here, not in both subprocesses: image size, mask block size and rings must fit together
        settings.mim_config().validate(settings.img_size, patch_size_of(settings.model))
    except SonofmError as error:
        parser.error(str(error))
    return settings, args.worker


def main(argv: list[str] | None = None) -> None:
    settings, worker = parse_settings(argv)
    if worker:
        print(json.dumps(asdict(measure(settings, worker))))
        return
    results = {}
    for precision in PRECISIONS:
        print(f"# {precision}", file=sys.stderr, flush=True)
        results[precision] = measure_in_subprocess(__file__, precision, settings, TrainMeasurement)
    for line in figure_lines(settings, results):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
