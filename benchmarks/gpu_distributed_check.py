"""GPU check of distributed pretraining: `sonofm pretrain mim` under DDP and under FSDP on every visible GPU, then
each export reloaded and compared.

For each strategy: 2 optimiser steps of MIM with a USFM ViT-B/16 at 224 px (same seed, same phantom images), the
export (``model.safetensors``) reloaded with ``create_backbone(..., weights=...)``. Printed, one JSON line each:

- ``export_complete``: every tensor of a fresh model is in the export with its full shape (an FSDP export written
  from shards would be short or empty);
- ``reload_missing_keys``: keys the reload could not fill (must be 0);
- ``weights_moved``: max abs change of the export from the seeded initial weights (training reached the export);
- ``ddp_vs_fsdp_max_abs_diff`` and its ratio to ``weights_moved``: the two strategies train the same model, so their
  exports differ by reduction order only (a ratio well below 1).

    .venv/bin/python benchmarks/gpu_distributed_check.py                     # every GPU, ViT-B/16, 224 px
    .venv/bin/python benchmarks/gpu_distributed_check.py --device cpu --model usfm_vit_tiny_patch16 --img-size 64
        # CPU dry run of the script: DDP on 2 processes only (FSDP needs CUDA)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from sonofm.data.phantom import write_phantom_dataset
from sonofm.models import create_backbone

SEED = 0


def pretrain(args: argparse.Namespace, strategy: str, images: Path, out: Path) -> None:
    command = [sys.executable, "-m", "sonofm", "pretrain", "mim", "--data", str(images),
               "--model", args.model, "--img-size", str(args.img_size), "--batch-size", str(args.batch_size),
               "--set", "max_steps=2", "--set", "figure_every=0", "--set", f"seed={SEED}", "--num-workers", "0",
               "--accelerator", "gpu" if args.device == "cuda" else "cpu", "--devices", str(args.devices),
               "--strategy", strategy, "--precision", args.precision, "--no-progress", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pretrain mim --strategy {strategy} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def initial_weights(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The encoder as the runs start it: built after seeding, as ``pretrain mim`` does."""
    import lightning as L

    L.seed_everything(SEED, verbose=False)
    from sonofm.tasks.mim.pretrain import MimPretrainConfig, build_mim_model

    model = build_mim_model(MimPretrainConfig(data=["-"], model=args.model, img_size=args.img_size))
    return {key: value.detach().clone() for key, value in model.encoder.state_dict().items()}


def check_export(args: argparse.Namespace, strategy: str, export: Path, initial: dict[str, torch.Tensor]) -> dict:
    saved = load_file(export)
    fresh = create_backbone(args.model, img_size=args.img_size, shared_rel_pos_bias=True).state_dict()
    complete = all(key in saved and saved[key].shape == value.shape for key, value in fresh.items())
    reloaded = create_backbone(args.model, img_size=args.img_size, weights=str(export), shared_rel_pos_bias=True)
    report = getattr(reloaded, "load_report", None)
    missing = len(getattr(report, "missing", []) or [])
    moved = max(float((saved[key].float() - initial[key].float()).abs().max()) for key in saved if key in initial)
    line = {"strategy": strategy, "export_complete": complete, "reload_missing_keys": missing, "weights_moved": moved}
    print(json.dumps({**common_fields(args), **line}), flush=True)
    return saved


def common_fields(args: argparse.Namespace) -> dict:
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    return {"model": args.model, "img_size": args.img_size, "batch_per_device": args.batch_size,
            "devices": args.devices, "precision": args.precision, "device": device, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="usfm_vit_base_patch16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8, help="per device")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--devices", type=int, help="default: every GPU (CPU: 2 processes)")
    parser.add_argument("--precision", choices=("auto", "bf16", "32"), default="auto",
                        help="32 makes the DDP/FSDP comparison tight (under bf16-mixed, Lightning's FSDP casts "
                        "parameters, buffers and gradient reduction to bf16; DDP's autocast does not)")
    args = parser.parse_args()
    args.devices = args.devices or (torch.cuda.device_count() if args.device == "cuda" else 2)
    strategies = ["ddp", "fsdp"] if args.device == "cuda" else ["ddp"]
    initial = initial_weights(args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        count = max(4, args.batch_size * args.devices * 2 // 4)
        root = write_phantom_dataset(work / "phantom", n_per_class=count, size=args.img_size, seed=0,
                                     frames_per_group=1)
        exports = {}
        for strategy in strategies:
            pretrain(args, strategy, root / "seg" / "images", work / strategy)
            exports[strategy] = check_export(args, strategy, work / strategy / "model.safetensors", initial)
    if len(exports) == 2:
        diff = max(float((exports["ddp"][key].float() - exports["fsdp"][key].float()).abs().max())
                   for key in exports["ddp"])
        moved = max(float((exports["ddp"][key].float() - initial[key].float()).abs().max()) for key in initial)
        print(json.dumps({**common_fields(args), "ddp_vs_fsdp_max_abs_diff": diff,
                          "ratio_to_weights_moved": diff / moved if moved else None}), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
