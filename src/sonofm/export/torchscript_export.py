"""Export a finished run to TorchScript (traced eval-mode forward), checked against PyTorch."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from sonofm.atomic import atomic_write, atomic_write_json
from sonofm.errors import SonofmError
from sonofm.export.parity import check_parity, parity_batch
from sonofm.export.preprocessing import InferenceWrapper, preprocessing_of
from sonofm.runs.run_model import RunModel


def export_torchscript(loaded: RunModel, out: str | Path) -> float:
    """Write ``out`` (``torch.jit.load``-able, preprocessing in its ``preprocessing.json`` extra file) and
    ``out.json``; return the parity max abs difference."""
    out = Path(out)
    wrapper = InferenceWrapper(loaded.model, loaded.task).eval()
    preprocessing = preprocessing_of(loaded)
    differences: list[float] = []

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                traced = torch.jit.trace(wrapper, (parity_batch(loaded.img_size, batch_size=1, seed=1),),
                                         check_trace=False)
            except Exception as error:
                raise SonofmError(f"TorchScript export of {loaded.metadata.get('model')} failed: "
                                  f"{str(error).splitlines()[0]}") from error
        torch.jit.save(traced, str(tmp), _extra_files={"preprocessing.json": json.dumps(preprocessing)})
        scripted = torch.jit.load(str(tmp))
        with torch.no_grad():
            differences.append(check_parity(wrapper, scripted, loaded.img_size, str(out)))

    atomic_write(out, write)
    atomic_write_json(out.with_name(out.name + ".json"), preprocessing)
    return differences[0]
