"""ACLUS pretraining throughput and peak memory: sonofm's step against the reference's way of computing it.

Both steps compute the same objective (DetCon-B contrast between two views plus core context prediction, at the
four scales C5/P4/P3/P2) on a fixed random batch of views, anatomy maps (4 ids) and a core image, then backward, a
LARS step and the target's EMA update:

- ``ours``: sonofm's defaults: one ResNet-FPN pass per network over the views and one over the core (rendered at
  ``aclus.core_size``, 128 px for 224 px views), every scale pooled from them (the P levels' 3x3 convs applied to
  the pooled vectors), one EMA update;
- ``baseline``: as the reference code does it: the core rendered at the views' size; for each scale, fresh
  corruption, the online and target networks run on the view pair and again on the core (duplicated to the views'
  batch, as the reference feeds it), and the EMA update runs inside the scale loop (4 per step): 16 backbone passes
  per step. Each pass computes only the pyramid levels its scale needs (C5 alone for the 7 x 7 scale), which makes
  the baseline cheaper, not dearer, than recomputing the whole FPN.

Every (method, precision) runs in its own subprocess (its own peak memory, and a same-dtype GEMM for the matmul
efficiency). The parent prints one JSON line per figure, ``speedup_vs_baseline`` and bf16/fp32 ratios included;
``--precisions`` picks fp32 and/or bf16 (default: both where bf16 runs natively, else fp32).

    .venv/bin/python benchmarks/aclus_throughput.py        # resnet18 at 224 px, CPU or CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import (  # noqa: E402
    PRECISIONS,
    Loss,
    TrainingSettings,
    TrainMeasurement,
    add_training_flags,
    add_precisions_flag,
    add_worker_flag,
    figure_line,
    images_per_s,
    measure_in_subprocess,
    resolve_precisions,
    speedup_line,
    time_training_steps,
    training_figure_lines,
)

METHODS = ("ours", "baseline")
CPU_STEPS = 3
NUM_IDS = 4


def random_batch(settings: TrainingSettings, device: torch.device, core_size: int) -> dict[str, torch.Tensor]:
    """Views, blocky 4-id anatomy maps, and the core at the views' size and at ``core_size``."""
    generator = torch.Generator().manual_seed(0)
    size, batch = settings.img_size, settings.batch_size
    masks = torch.randint(0, NUM_IDS, (3, batch, size // 32, size // 32), generator=generator)
    masks = masks.repeat_interleave(32, dim=2).repeat_interleave(32, dim=3)  # blocky anatomy maps
    core = torch.rand(batch, 3, size, size, generator=generator)
    return {
        "views": torch.rand(2, batch, 3, size, size, generator=generator).to(device),
        "view_masks": masks[:2].to(device),
        "core": core.to(device),
        "core_masks": masks[2].to(device),
        "small_core": F.interpolate(core, size=core_size, mode="bilinear", antialias=True).to(device),
        "small_core_masks": F.interpolate(masks[2:].float(), size=core_size, mode="nearest")[0].long().to(device),
        "core_valid": torch.ones(batch, dtype=torch.bool, device=device),
    }


def build(settings: TrainingSettings, device: torch.device, method: str) -> tuple[Loss, torch.optim.Optimizer]:
    """The ACLUS model, a LARS optimiser and the loss of one step by ``method`` (EMA update included)."""
    from timm.optim import Lars

    from sonofm.methods.aclus.corruption import corrupt
    from sonofm.methods.aclus.model import AclusConfig, AclusModel

    model = AclusModel(settings.model, settings.img_size, AclusConfig(num_ids=16)).to(device)
    model.train()
    optimizer = Lars([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=1e-6)
    batch = random_batch(settings, device, model.config.resolved_core_size(settings.img_size))
    generator = torch.Generator(device=device).manual_seed(0)

    def ours() -> torch.Tensor:
        model.update_target(0.99)
        corrupted = corrupt(batch["small_core"], model.config.corruption, generator)
        return model.losses(batch["views"], batch["view_masks"], batch["small_core"], corrupted,
                            batch["small_core_masks"], batch["core_valid"], generator)["loss"]

    def baseline() -> torch.Tensor:
        return reference_style_loss(model, batch, generator)

    return (ours if method == "ours" else baseline), optimizer


def reference_style_loss(model, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """The same objective computed scale by scale with 16 backbone passes, as the reference trainer does."""
    from sonofm.methods.aclus.corruption import corrupt
    from sonofm.methods.aclus.loss import context_loss, detcon_loss
    from sonofm.methods.aclus.pooling import id_fractions, id_presence, pool_features, sample_ids
    from sonofm.models.resnet_fpn import SCALES

    config = model.config
    views, view_masks, core = batch["views"], batch["view_masks"], batch["core"]
    size = core.shape[0]
    two_views = torch.cat([views[0], views[1]])
    two_cores = torch.cat([core, core])
    core_masks = torch.cat([batch["core_masks"], batch["core_masks"]])
    shared = torch.minimum(id_presence(view_masks[0], NUM_IDS, True), id_presence(view_masks[1], NUM_IDS, True))
    view_ids, valid = sample_ids(shared, config.num_ids, generator)
    core_ids, _ = sample_ids(id_presence(core_masks, NUM_IDS, True), config.num_ids, generator)
    grid = core.shape[-1] // 4
    view_fractions = torch.cat([id_fractions(view_masks[0], view_ids, grid), id_fractions(view_masks[1], view_ids, grid)])
    core_fractions = id_fractions(core_masks, core_ids, grid)

    def embed(network, images, fractions, scale):
        features = pyramid_level(network.fpn, model._normalise(images).contiguous(memory_format=torch.channels_last),
                                 scale)
        head = network.project_c5 if scale == "c5" else network.project_fpn
        pooled = pool_features(features, fractions)
        return head(pooled.flatten(0, 1)).view(*pooled.shape[:2], -1)

    def predict(x):
        return model.predictor(x.flatten(0, 1)).view(*x.shape)

    total = 0.0
    for scale in SCALES:
        model.update_target(0.99)  # the reference updates the target inside the scale loop
        corrupted = corrupt(two_cores, config.corruption, generator)  # and draws a fresh corruption per scale
        q = predict(embed(model.online, two_views, view_fractions, scale))
        with torch.no_grad():
            z = embed(model.target, two_views, view_fractions, scale)
        q_core = predict(embed(model.online, corrupted, core_fractions, scale))
        with torch.no_grad():
            z_core = embed(model.target, two_cores, core_fractions, scale)
        total = total + detcon_loss(q[:size], q[size:], z[:size], z[size:], view_ids, valid, config.temperature)
        total = total + context_loss(q_core, z_core, torch.ones(2 * size, dtype=torch.bool, device=core.device))
    return total


def pyramid_level(fpn, images: torch.Tensor, scale: str) -> torch.Tensor:
    """Only what one scale needs: C5 for ``c5``; the top-down path down to that level for ``p4``/``p3``/``p2``."""
    c2, c3, c4, c5 = fpn.backbone.forward_pyramid(images)
    if scale == "c5":
        return c5
    level = fpn.lateral[3](c5)
    for depth, (name, lateral) in enumerate(zip(("p4", "p3", "p2"), (c4, c3, c2))):
        level = fpn.lateral[2 - depth](lateral) + F.interpolate(level, scale_factor=2.0, mode="nearest")
        if name == scale:
            return fpn.smoothing(scale)(level)
    raise ValueError(scale)


def measure(settings: TrainingSettings, job: str) -> TrainMeasurement:
    method, precision = job.split("-")
    return time_training_steps(settings, precision, lambda s, device: build(s, device, method))


def figure_lines(settings: TrainingSettings, results: dict[tuple[str, str], TrainMeasurement]) -> list[dict]:
    """Training figures per method and precision measured, bf16/fp32 per method (when both were), ours/baseline
    per precision."""
    precisions = [precision for precision in PRECISIONS if ("ours", precision) in results]
    run = {"benchmark": "aclus_throughput", "model": settings.model, "img_size": settings.img_size,
           "batch_size": settings.batch_size, "device": settings.device, "threads": settings.threads}
    lines = []
    for method in METHODS:
        common = {**run, "method": method}
        per_precision = {precision: results[method, precision] for precision in precisions}
        lines += training_figure_lines(common, per_precision, settings.batch_size, settings.gemm_size, settings.device)
        if len(per_precision) == len(PRECISIONS):
            lines.append(speedup_line(common, per_precision, settings.batch_size))
    for precision in precisions:
        common = {**run, "method": "ours"}
        ratio = (images_per_s(results["ours", precision], settings.batch_size)
                 / images_per_s(results["baseline", precision], settings.batch_size))
        lines.append(figure_line(common, precision, "speedup_vs_baseline", round(ratio, 3), "x",
                                 baseline=f"baseline images_per_s ({precision})", target=4.0))
    return lines


def parse_settings(argv: list[str] | None = None) -> tuple[TrainingSettings, str | None, list[str] | None]:
    """Settings, the worker's job (None in the parent) and ``--precisions`` (None: see ``resolve_precisions``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_flags(parser, CPU_STEPS)
    add_precisions_flag(parser)
    parser.set_defaults(model="resnet18", warmup=1)
    add_worker_flag(parser, [f"{method}-{precision}" for method in METHODS for precision in PRECISIONS])
    args = parser.parse_args(argv)
    return TrainingSettings.from_flags(parser, args, CPU_STEPS), args.worker, args.precisions


def main(argv: list[str] | None = None) -> None:
    settings, worker, chosen = parse_settings(argv)
    if worker:
        print(json.dumps(asdict(measure(settings, worker))))
        return
    precisions = resolve_precisions(chosen, settings.device)
    results = {}
    for method in METHODS:
        for precision in precisions:
            print(f"# {method} {precision}", file=sys.stderr, flush=True)
            results[method, precision] = measure_in_subprocess(__file__, f"{method}-{precision}", settings,
                                                               TrainMeasurement)
    for line in figure_lines(settings, results):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
