"""Export a finished run to ONNX (dynamic batch axis, preprocessing in the metadata), checked against PyTorch."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from sonofm.atomic import atomic_write, atomic_write_json
from sonofm.errors import SonofmError
from sonofm.export.onnx_runtime import METADATA_KEY, OnnxModel
from sonofm.export.parity import check_parity, parity_batch
from sonofm.export.preprocessing import InferenceWrapper, preprocessing_of
from sonofm.runs.run_model import RunModel

DEFAULT_OPSET = 18


def export_onnx(loaded: RunModel, out: str | Path, opset: int = DEFAULT_OPSET) -> float:
    """Write ``out`` (ONNX) and ``out.json`` (preprocessing); return the parity max abs difference.

    The TorchScript-based exporter runs first (fast, exact for the ViTs, ResNets and linear heads); models it cannot
    express (the UperNet pyramid pooling's adaptive pools of non-dividing sizes) go through the dynamo exporter,
    which decomposes them. Either way the file is checked against PyTorch before it is moved into place.
    """
    out = Path(out)
    wrapper = InferenceWrapper(loaded.model, loaded.task).eval()
    preprocessing = preprocessing_of(loaded)
    differences: list[float] = []

    def write(tmp: Path) -> None:
        exporter = _export(wrapper, parity_batch(loaded.img_size), tmp, opset, str(loaded.metadata.get("model")))
        print(f"exporter: {exporter}")
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(preprocessing)})
        onnx.save(model, str(tmp))
        differences.append(check_parity(wrapper, OnnxModel(tmp), loaded.img_size, str(out)))

    atomic_write(out, write)  # the parity check runs on the temporary file: a failing export leaves nothing
    atomic_write_json(out.with_name(out.name + ".json"), preprocessing)
    return differences[0]


def _export(model: nn.Module, example: torch.Tensor, path: Path, opset: int, name: str) -> str:
    """Export with the TorchScript-based exporter, else the dynamo one; return which one wrote ``path``."""
    names = {"input_names": ["images"], "output_names": ["output"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}}, **names)
            return "torchscript"
        except Exception:  # an op the TorchScript exporter cannot express; the dynamo exporter decomposes it
            pass
        try:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                        dynamic_shapes=({0: batch},), verbose=False, **names)
            program.save(str(path))
            return "dynamo"
        except Exception as error:
            raise SonofmError(f"ONNX export of {name} failed: {str(error).splitlines()[0]}") from error
