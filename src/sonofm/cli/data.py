"""``sonofm data``: check a dataset folder, write grouped k-fold assignments, pack image folders into shards,
generate the phantom set."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="check, split, pack or generate datasets",
                                 description="Check a dataset folder, write k-fold assignments, make phantom data.")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    check = commands.add_parser(
        "check", help="decode every file and list all problems",
        description="Detect the layout, decode every image and mask, print counts and every problem found. "
        "Exit code 0: no problems; 1: problems found; 2: the folder could not be indexed.",
    )
    _add_index_arguments(check)
    check.add_argument("--num-classes", type=int, metavar="N",
                       help="segmentation: number of mask classes incl. background (default: inferred)")
    check.add_argument("--progress", action="store_true", help="show a progress bar")
    check.set_defaults(handler=run_check)

    split = commands.add_parser(
        "split", help="write grouped, stratified k-fold assignments",
        description="Assign every image to one of K folds (a group never straddles two folds) and write "
        "name,fold,group,label rows to a CSV file.",
    )
    _add_index_arguments(split)
    split.add_argument("--folds", type=int, required=True, metavar="K", help="number of folds")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--out", type=Path, required=True, metavar="FILE", help="CSV file to write")
    split.set_defaults(handler=run_split)

    pack = commands.add_parser(
        "pack", help="pack image folders into WebDataset tar shards for pretraining at scale",
        description="Decode every image under the input folders once, optionally resize it, and write tar shards of "
        "uint8 arrays with per-image metadata (source: organ, site) and an offset index. `sonofm pretrain mim|aclus "
        "--data OUT`, `sonofm embed --input OUT` and `sonofm sam automask --images OUT` read the result. Rerunning an "
        "interrupted pack resumes it.",
    )
    pack.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image folders (searched recursively)")
    pack.add_argument("--out", type=Path, required=True, metavar="DIR", help="packed folder to write")
    pack.add_argument("--img-size", type=int, metavar="N", help="resize so the shorter side is N px (default: keep)")
    pack.add_argument("--shard-size", type=int, default=10_000, metavar="N", help="images per shard (default 10000)")
    pack.add_argument("--shard", metavar="K/N", help="pack shards K, K+N, ... in this process while others pack the "
                      "rest (default: RANK/WORLD_SIZE under torchrun, else everything)")
    pack.add_argument("--source-from", default="folder", metavar="folder|TABLE.csv:COLUMN",
                      help="each image's source (for --balance source): its input folder (default), or its row's "
                      "COLUMN in a table whose `path` (or `name`: file name without extension) column names images")
    pack.add_argument("--no-progress", action="store_true")
    pack.set_defaults(handler=run_pack)

    phantom = commands.add_parser("phantom", help="write the synthetic phantom data set",
                                  description="Write seeded synthetic ultrasound phantoms: DIR/cls and DIR/seg.")
    phantom.add_argument("--out", type=Path, required=True, metavar="DIR")
    phantom.add_argument("--n-per-class", type=int, default=48, metavar="N")
    phantom.add_argument("--size", type=int, default=128, metavar="S", help="image side in pixels")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.set_defaults(handler=run_phantom)


def _add_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="dataset folder")
    parser.add_argument("--task", choices=("cls", "seg"), help="default: inferred from the layout")
    parser.add_argument("--group-by", metavar="COL", help="labels.csv column holding the patient/case/video "
                        "group, filename-prefix, or none (default: a known case column, else the DICOM patient ids)")


def run_pack(args: argparse.Namespace) -> int:
    from sonofm.data.pack_writer import pack_images
    from sonofm.data.work_shard import Shard

    result = pack_images(args.inputs, args.out, args.img_size, args.shard_size, progress=not args.no_progress,
                         shard=Shard.parse(args.shard) if args.shard else None, source_from=args.source_from)
    if not result.finished:
        print(f"packed {result.images} images into {result.shards} shards in {result.folder}; the pack is joined by "
              "the process that finishes the last shard")
        return 0
    print(f"packed {result.images} images into {result.shards} shards in {result.folder} "
          f"({result.skipped} unreadable files skipped, listed in {result.folder / 'skipped.csv'})")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from sonofm.data.layouts import load_index
    from sonofm.data.validate import check_dataset

    index = load_index(args.path, task=args.task, group_by=args.group_by, num_classes=args.num_classes)
    report = check_dataset(index, progress=args.progress)
    print(report.format())
    if report.problems:
        print(f"{len(report.problems)} problems found")
        return 1
    print("no problems found")
    return 0


def run_split(args: argparse.Namespace) -> int:
    from sonofm.data.layouts import load_index
    from sonofm.data.splits import group_key, kfold_assignments, save_folds, stratum

    index = load_index(args.path, task=args.task, group_by=args.group_by)
    folds = kfold_assignments(index.samples, args.folds, seed=args.seed)
    save_folds(index, folds, args.out)
    if index.has_splits:
        print(f"note: folds cover all {len(index.samples)} images; the layout's own train/val/test split is ignored")
    labels = [stratum(sample, index.classes) for sample in index.samples]
    columns = [c for c in index.classes if c in labels] + sorted(set(labels) - set(index.classes))
    header = ["fold", "images", "groups", *columns]
    rows = []
    for fold in range(args.folds):
        members = [position for position, f in enumerate(folds) if f == fold]
        counts = Counter(labels[p] for p in members)
        groups = {group_key(index.samples[p]) for p in members}
        rows.append([str(fold), str(len(members)), str(len(groups)), *(str(counts[c]) for c in columns)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    print(f"wrote {args.out}")
    return 0


def run_phantom(args: argparse.Namespace) -> int:
    from sonofm.data.phantom import write_phantom_dataset

    out = write_phantom_dataset(args.out, n_per_class=args.n_per_class, size=args.size, seed=args.seed)
    print(f"wrote the phantom data set to {out} (cls/ and seg/)")
    return 0
