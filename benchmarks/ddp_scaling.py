"""DDP scaling of MIM pretraining: images/s of `sonofm pretrain mim` on 1 process against N processes at the same
per-process batch, and the scaling efficiency ``images_per_s(N) / (N * images_per_s(1))``.

Each configuration is one real run of ``pretrain_mim`` (Lightning's launcher, gloo on CPU, NCCL on CUDA) on phantom
images written once into a temporary folder. Rank 0 times the optimiser steps after ``--warmup`` untimed ones; the
images of a step are the per-process batch times the number of processes. On CPU every process gets
``--threads-per-process`` threads (default 1), so N processes use N times the cores of one: the figure measures what
the gradient all-reduce and the extra processes cost, not a change in threads. Rank 0's peak memory (process RSS on
CPU, allocated CUDA memory on a GPU) is printed per configuration.

    .venv/bin/python benchmarks/ddp_scaling.py                   # ViT-S/16 at 224 px, batch 8, 1 vs 2 CPU processes
    .venv/bin/python benchmarks/ddp_scaling.py --device cuda --processes 8 --model usfm_vit_base_patch16 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import cpu_flags, peak_rss_bytes  # noqa: E402


class StepTimer(L.Callback):
    """On rank 0: the wall time of the optimiser steps after ``warmup``, written to ``out`` as JSON at the end."""

    def __init__(self, warmup: int, out: Path) -> None:
        self.warmup = warmup
        self.out = out
        self.start: float | None = None
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.start is not None:
            steps = trainer.global_step - self.warmup
            peak_mib = (torch.cuda.max_memory_allocated() if torch.cuda.is_available() else peak_rss_bytes()) / 2**20
            self.out.write_text(json.dumps({"seconds": time.perf_counter() - self.start, "steps": steps,
                                            "world_size": trainer.world_size, "peak_mib": peak_mib}))


def run_pretraining(args: argparse.Namespace) -> None:
    """The measured run (this script re-run by ``main`` with ``--worker``; Lightning re-runs it for ranks > 0)."""
    from sonofm.tasks.mim.pretrain import MimPretrainConfig, pretrain_mim

    config = MimPretrainConfig(
        data=[args.images], model=args.model, img_size=args.img_size, batch_size=args.batch_size,
        max_steps=args.warmup + args.steps, num_workers=0, progress=False, figure_every=0, checkpoint_every=0,
        precision=args.precision, accelerator=args.device, devices=str(args.worker_processes),
        strategy="ddp" if args.worker_processes > 1 else "auto",
    )
    timer = StepTimer(args.warmup, Path(args.result))
    pretrain_mim(config, args.out, echo=lambda _: None, callbacks=[timer])


def measure(args: argparse.Namespace, processes: int, images: Path, work: Path) -> dict:
    result = work / f"result_{processes}.json"
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--worker-processes", str(processes),
               "--images", str(images), "--out", str(work / f"run_{processes}"), "--result", str(result),
               *_shared_flags(args)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads_per_process)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {processes}-process run failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def _shared_flags(args: argparse.Namespace) -> list[str]:
    return ["--model", args.model, "--img-size", str(args.img_size), "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
            "--precision", args.precision, "--threads-per-process", str(args.threads_per_process)]


def write_images(folder: Path, count: int, size: int) -> Path:
    from sonofm.data.phantom import write_phantom_dataset

    root = write_phantom_dataset(folder, n_per_class=max(1, count // 4), size=size, seed=0, frames_per_group=1)
    return root / "seg" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="usfm_vit_small_patch16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--steps", type=int, default=8, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimiser steps first")
    parser.add_argument("--processes", type=int, default=2, help="compared with 1 process")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads-per-process", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_pretraining(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        needed = args.batch_size * args.processes * (args.warmup + args.steps)
        images = write_images(work / "phantom", needed, args.img_size)
        common = {"benchmark": "ddp_scaling", "model": args.model, "img_size": args.img_size,
                  "batch_per_process": args.batch_size,
                  "device": args.device, "precision": args.precision, "cpu_flags": cpu_flags(),
                  "threads_per_process": args.threads_per_process, "torch": torch.__version__}
        rates = {}
        for processes in (1, args.processes):
            timed = measure(args, processes, images, work)
            rates[processes] = timed["steps"] * args.batch_size * processes / timed["seconds"]
            print(json.dumps({**common, "processes": processes, "metric": "images_per_s",
                              "value": round(rates[processes], 3), "steps": timed["steps"]}), flush=True)
            print(json.dumps({**common, "processes": processes, "metric": "peak_memory_mib_rank0",
                              "value": round(timed["peak_mib"], 1),
                              "memory": "CUDA allocated" if args.device == "cuda" else "process RSS"}), flush=True)
        efficiency = rates[args.processes] / (args.processes * rates[1])
        print(json.dumps({**common, "processes": args.processes, "metric": "scaling_efficiency",
                          "value": round(efficiency, 3), "baseline": "1 process, same run"}), flush=True)


if __name__ == "__main__":
    main()
