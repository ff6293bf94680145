"""Run an exported ONNX model with onnxruntime, as a ``forward`` callable on torch tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import Tensor

from sonofm.errors import SonofmError

METADATA_KEY = "sonofm_preprocessing"


class OnnxModel:
    """An ONNX file on the CPU: ``model(images (B, 3, S, S) float32) -> output tensor``; ``preprocessing`` is the
    dict recorded at export."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise SonofmError(f"--onnx {path} does not exist")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for unreadable files
            raise SonofmError(f"{path} is not a readable ONNX model: {str(error).splitlines()[0]}") from error
        self.preprocessing = read_preprocessing(path)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: Tensor) -> Tensor:
        array = images.detach().cpu().float().numpy()
        (output,) = self.session.run(None, {self.input_name: np.ascontiguousarray(array)})
        return torch.from_numpy(output)


def read_preprocessing(path: Path) -> dict[str, Any]:
    """The preprocessing dict from the ONNX metadata_props, else from the ``FILE.json`` sidecar."""
    props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    if METADATA_KEY in props:
        return json.loads(props[METADATA_KEY])
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    raise SonofmError(f"{path} carries no sonofm preprocessing metadata (export it with `sonofm export`)")
