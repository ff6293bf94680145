"""Pretraining input speed: images/s delivered to the model (decode + augment + collate) from folders of full-size
PNG and JPEG images against a packed folder (``sonofm data pack``), and the memory of a 2 M-image index.

Writes ``--images`` grayscale ultrasound-like pictures of ``--full-size`` (rows x cols) as PNG and as JPEG into a
temporary folder, packs the PNG folder with the shorter side at ``--pack-size``, then times one epoch of the
pretraining loader (``PretrainImageDataset`` at ``--img-size`` with its training augmentation, the seeded sampler,
batch ``--batch-size``) over each, after an untimed epoch, with 0 workers (decoding in the process: a per-core
figure) and with sonofm's default worker count. The index figures load, in a fresh process each, the image list of
2 M files as pretraining keeps it (``list[Path]``) and a synthetic 2 M-entry packed index (``PackedImages``), and
report the resident memory they add.

    .venv/bin/python benchmarks/data_throughput.py
    .venv/bin/python benchmarks/data_throughput.py --images 512 --full-size 768 1024 --index-entries 2000000
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

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sonofm.data.pack_writer import pack_images
from sonofm.data.packed import INDEX, MANIFEST, PACK_FORMAT, PackedImages
from sonofm.data.sampling import SeededEpochSampler
from sonofm.data.unlabeled import PretrainImageDataset
from sonofm.data.workers import data_workers, usable_cores

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import cpu_flags  # noqa: E402

INDEX_PROBE = """
import os, sys
from pathlib import Path
from sonofm.data.packed import PackedImages  # imported before the first reading in both cases
def resident_mib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = resident_mib()
kind, folder, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "packed":
    index = PackedImages(folder)
else:
    index = [Path(folder) / f"organ_{i % 7:02d}" / f"study_{i // 50:06d}" / f"frame_{i:09d}.png" for i in range(count)]
print(resident_mib() - before)
"""

def write_pictures(folder: Path, count: int, rows: int, cols: int) -> tuple[Path, Path]:
    """``count`` speckle-textured grayscale pictures as PNG (``folder/png``) and JPEG quality 90 (``folder/jpeg``)."""
    rng = np.random.default_rng(0)
    png, jpeg = folder / "png", folder / "jpeg"
    png.mkdir(parents=True)
    jpeg.mkdir(parents=True)
    for index in range(count):
        coarse = rng.random((rows // 8, cols // 8)) * 180
        picture = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((cols, rows), Image.Resampling.BICUBIC),
                             dtype=np.float64)
        speckle = rng.rayleigh(0.5, (rows, cols))
        image = Image.fromarray(np.clip(picture * speckle, 0, 255).astype(np.uint8))
        image.save(png / f"{index:05d}.png")
        image.save(jpeg / f"{index:05d}.jpg", quality=90)
    return png, jpeg


def images_per_s(dataset: PretrainImageDataset, batch_size: int, workers: int) -> float:
    """Images/s of one whole epoch of the training loader (persistent workers, as training uses them), after one
    untimed epoch that starts the workers. The timed epoch's first index reaches the workers when it starts, so every
    image it delivers is decoded inside the timed window (no batch prefetched ahead of it)."""
    loader = DataLoader(dataset, batch_size=batch_size, sampler=SeededEpochSampler(len(dataset), 0),
                        num_workers=workers, persistent_workers=workers > 0, drop_last=True)
    for _ in loader:
        pass
    start, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch)
    return seen / (time.perf_counter() - start)


def index_memory_mib(kind: str, folder: Path, count: int) -> float:
    done = subprocess.run([sys.executable, "-c", INDEX_PROBE, kind, str(folder), str(count)], capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip())


def synthetic_index(folder: Path, count: int, shard_size: int = 10_000) -> Path:
    """A packed folder's index for ``count`` images (no shards: only the index is loaded)."""
    folder.mkdir(parents=True)
    positions = np.arange(count)
    np.savez(folder / INDEX, shard=(positions // shard_size).astype(np.int32), key=positions.astype(np.int32),
             offset=((positions % shard_size) * 66_560 + 512).astype(np.int64),
             length=np.full(count, 65_664, np.int32), source=(positions % 7).astype(np.int16))
    (folder / MANIFEST).write_text(json.dumps({"format": PACK_FORMAT, "images": count,
                                               "shards": -(-count // shard_size),
                                               "sources": [f"organ_{i:02d}" for i in range(7)], "img_size": 256}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--full-size", type=int, nargs=2, default=(600, 800), metavar=("ROWS", "COLS"))
    parser.add_argument("--pack-size", type=int, default=256, help="shorter side of the packed images")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--index-entries", type=int, default=2_000_000)
    args = parser.parse_args()
    if args.images < 2 * args.batch_size:
        parser.error("--images must be at least 2 batches")
    common = {"benchmark": "data_throughput", "img_size": args.img_size, "cpus": usable_cores(),
              "cpu_flags": cpu_flags(), "torch": torch.__version__}
    default_workers = data_workers(None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        png, jpeg = write_pictures(work / "full", args.images, *args.full_size)
        pack_images([png], work / "packed", img_size=args.pack_size, progress=False)
        sources = {"png_folder": sorted(png.iterdir()), "jpeg_folder": sorted(jpeg.iterdir()),
                   "packed": PackedImages(work / "packed")}
        for workers in dict.fromkeys((0, default_workers)):
            rates = {name: images_per_s(PretrainImageDataset(images, args.img_size), args.batch_size, workers)
                     for name, images in sources.items()}
            for name, rate in rates.items():
                line = {**common, "source": name, "workers": workers, "metric": "images_per_s", "value": round(rate, 1)}
                if name != "png_folder":
                    line["ratio_to_png_folder"] = round(rate / rates["png_folder"], 2)
                print(json.dumps(line), flush=True)
        index = synthetic_index(work / "index", args.index_entries)
        for kind in ("packed", "paths"):
            print(json.dumps({**common, "source": kind, "metric": "index_memory_mib", "entries": args.index_entries,
                              "value": round(index_memory_mib(kind, index, args.index_entries), 1)}), flush=True)


if __name__ == "__main__":
    main()
