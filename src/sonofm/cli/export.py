"""``sonofm export``: a finished run as a deployable ONNX or TorchScript file, or a shareable model folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export a finished run to ONNX or TorchScript (parity-checked), or "
                                                  "as a model folder with a model card")
    export.add_argument("--run", required=True,
                        help="finished run folder (classification, segmentation or enhancement)")
    export.add_argument("--format", required=True, choices=["onnx", "torchscript", "folder"])
    export.add_argument("--out", required=True, help="output file (its preprocessing goes to OUT.json too), or the "
                                                     "folder for --format folder")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    export.add_argument("--license", default="other",
                        help="folder: the model card's Hugging Face licence id, e.g. cc-by-nc-4.0 (default: other)")
    export.add_argument("--overwrite", action="store_true", help="folder: replace an existing model folder")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    if args.format == "folder":
        from sonofm.export.model_folder import export_model_folder

        out = export_model_folder(args.run, args.out, args.overwrite, args.license)
        print(f"model folder written to {out} (model.safetensors, config.json, README.md)")
        return 0
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
