"""``sonofm embed``: per-image embeddings from a frozen backbone."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    embed = subparsers.add_parser("embed", help="per-image embeddings from a frozen backbone (.npz or .parquet)")
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="backbone weights: a run's model.safetensors, a pretraining export or the "
                                          "official USFM checkpoint")
    source.add_argument("--run", help="finished run folder: embed with its fine-tuned backbone")
    embed.add_argument("--input", required=True,
                       help="an image file, a folder (searched recursively) or a packed folder (`sonofm data pack`)")
    embed.add_argument("--out", required=True, help="output file, .npz or .parquet")
    embed.add_argument("--model", help="backbone architecture when the weights file does not name it")
    embed.add_argument("--img-size", type=int, help="input size (default: the file's, else 224)")
    embed.add_argument("--pool", default="mean", choices=["cls", "mean"],
                       help="mean of the spatial tokens (default) or the first summary token")
    embed.add_argument("--batch-size", type=int, default=32)
    embed.add_argument("--precision", default="32", choices=["auto", "bf16", "32"],
                       help="auto: bf16 autocast where the hardware is fast (default 32)")
    embed.add_argument("--no-progress", action="store_true")
    embed.set_defaults(handler=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from sonofm.inference.embed import embed

    path, shape = embed(args.input, args.out, args.weights, args.run, args.model, args.img_size, args.pool,
                        args.batch_size, args.precision, progress=not args.no_progress)
    print(f"{shape[0]} embeddings of dimension {shape[1]} written to {path}")
    return 0
