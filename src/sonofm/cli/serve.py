"""``sonofm serve``: a local web page to try models on your own images (the ``serve`` extra)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="a local web page to try models on your own images")
    serve.add_argument("--run", action="append", required=True, metavar="RUN",
                       help="a finished run folder (classification, segmentation, enhancement or A-SAM), an exported "
                            "model folder or a model.safetensors; repeat for several models")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; another one is warned about)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--max-upload-mb", type=float, default=50, help="largest file accepted, in MB (default 50)")
    serve.add_argument("--precision", default="32", choices=["auto", "bf16", "32"],
                       help="auto: bf16 autocast where the hardware is fast (default 32: the numbers of "
                            "`sonofm predict --precision 32`)")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from sonofm.serve.server import serve

    try:
        serve(args.run, args.host, args.port, args.max_upload_mb, args.precision)
    except KeyboardInterrupt:
        pass  # Ctrl-C: the server has shut down (serve() may also just return then)
    print("sonofm serve: stopped")
    return 0
