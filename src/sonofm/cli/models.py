"""``sonofm models``: list the registered backbones."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list the available backbones")
    models.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    from sonofm.models import list_backbones

    for name in list_backbones():
        print(name)
    return 0
