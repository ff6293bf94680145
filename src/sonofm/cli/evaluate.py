"""``sonofm evaluate`` and ``sonofm predict``: use a finished run (predict: or an exported model)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("evaluate", help="metrics of a finished run on a split or another dataset")
    evaluate.add_argument("--run", required=True, help="finished run folder")
    evaluate.add_argument("--data", help="another dataset (default: the run's own data and split)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(handler=run_evaluate)

    predict = subparsers.add_parser("predict", help="predict image files with a finished run, an exported model "
                                                    "folder or an ONNX export")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="finished run folder")
    source.add_argument("--model", help="model folder written by `sonofm export --format folder`, or a "
                                        "model.safetensors written by a run")
    source.add_argument("--onnx", help="ONNX file written by `sonofm export` (run with onnxruntime on the CPU)")
    predict.add_argument("--input", required=True, help="an image file or a folder (searched recursively)")
    predict.add_argument("--out", required=True, help="output folder (predictions.csv)")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--precision", default="auto", choices=["auto", "bf16", "32"],
                         help="--run, --model: auto = bf16 autocast where the hardware is fast (ONNX runs in float32)")
    predict.add_argument("--no-progress", action="store_true")
    predict.set_defaults(handler=run_predict)


def run_evaluate(args: argparse.Namespace) -> int:
    from sonofm.inference.evaluate import evaluate_run

    metrics, path = evaluate_run(args.run, args.data, args.split, args.batch_size, progress=not args.no_progress)
    print_metrics(metrics, path)
    return 0


def print_metrics(metrics: dict[str, float], path) -> None:
    """One ``key value`` line per metric, then where they were written."""
    width = max((len(key) for key in metrics), default=0) + 2
    for key, value in metrics.items():
        print(f"{key:{width}s} {value:.4f}")
    print(f"written to {path}")


def run_predict(args: argparse.Namespace) -> int:
    from sonofm.inference.predict import predict_model, predict_onnx, predict_run

    predict = predict_run if args.run else predict_model if args.model else predict_onnx
    path = predict(args.run or args.model or args.onnx, args.input, args.out, args.batch_size,
                   progress=not args.no_progress, precision=args.precision)
    print(f"predictions written to {path}")
    return 0
