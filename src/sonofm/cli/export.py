"""``sonofm export``: a finished run as a deployable ONNX or TorchScript file."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export a finished run to ONNX or TorchScript (parity-checked)")
    export.add_argument("--run", required=True, help="finished run folder (classification, segmentation or enhancement)")
    export.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    export.add_argument("--out", required=True, help="output file; its preprocessing goes to OUT.json too")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from sonofm.runs.run_model import load_run_model

    loaded = load_run_model(args.run)
    if args.format == "onnx":
        from sonofm.export.onnx_export import export_onnx

        export_onnx(loaded, args.out, args.opset)
    else:
        from sonofm.export.torchscript_export import export_torchscript

        export_torchscript(loaded, args.out)
    print(f"{args.format} model written to {args.out} (preprocessing in {args.out}.json)")
    return 0
