"""``sonofm embed``: one embedding per image from a frozen backbone, written as ``.npz`` or ``.parquet``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from sonofm.atomic import atomic_write
from sonofm.data.datasets import ImageFileDataset
from sonofm.data.inputs import find_input_images
from sonofm.data.packed import PackedImages, is_packed_folder
from sonofm.data.workers import data_workers
from sonofm.engine.precision import autocast_for, inference_device
from sonofm.errors import SonofmError
from sonofm.extras import require_extra
from sonofm.inference.embedding_parts import PART_IMAGES, EmbeddingParts, describe_job
from sonofm.models import create_backbone
from sonofm.models.state_dict_file import read_weights_file
from sonofm.progress import progress_bar
from sonofm.runs.model_file import decode_metadata
from sonofm.runs.run_folder import RunFolder
from sonofm.runs.run_model import load_run_model

POOLS = ("cls", "mean")
FORMATS = (".npz", ".parquet")


def backbone_from_weights(path: str | Path, model: str | None = None, img_size: int | None = None) -> nn.Module:
    """A backbone loaded from a weights file, in eval mode.

    The architecture is ``model`` or the one the file names (``sonofm_backbone`` in a pretraining export, ``model``
    and ``model_args`` in a run's ``model.safetensors``); ``img_size`` defaults to the file's, else 224.
    """
    metadata = read_weights_file(path).metadata
    run_args = _run_metadata(metadata)
    name = model or metadata.get("sonofm_backbone") or run_args.get("model")
    if not name:
        raise SonofmError(f"{path} does not name its architecture; pass --model (see `sonofm models`)")
    size = img_size or int(metadata.get("img_size") or run_args.get("img_size") or 224)
    kwargs = run_args.get("model_args", {}) if run_args.get("model") == name else {}
    return create_backbone(name, img_size=size, weights=path, **kwargs).eval()


def _run_metadata(metadata: dict[str, str]) -> dict:
    """The JSON-encoded metadata of a run's ``model.safetensors`` (empty for other files)."""
    if "task" not in metadata:
        return {}
    try:
        return decode_metadata(metadata)
    except json.JSONDecodeError:
        return {}


def embed_images(backbone: nn.Module, images: list[Path] | PackedImages, img_size: int, pool: str = "mean",
                 batch_size: int = 32, precision: str = "32", on_batch: Callable[[int], None] | None = None,
                 positions: Sequence[int] | None = None) -> np.ndarray:
    """``float32 (N, D)`` embeddings of ``images`` (those at ``positions``, default all): the first summary token
    (``cls``) or the mean of the spatial tokens (``mean``) of ``backbone.forward_tokens`` (``(B, P + N, D)``);
    ``on_batch(images)`` after each batch."""
    if pool not in POOLS:
        raise SonofmError(f"--pool {pool}: choose one of {', '.join(POOLS)}")
    device = inference_device()
    backbone = backbone.to(device).eval()
    prefix = backbone.num_prefix_tokens
    if pool == "cls" and prefix == 0:
        raise SonofmError(f"backbone {backbone.backbone_name} has no summary token; use --pool mean")
    loader = DataLoader(ImageFileDataset(images, img_size, positions), batch_size=batch_size,
                        num_workers=data_workers(None))
    chunks: list[Tensor] = []
    with torch.inference_mode():
        for images, _ in loader:
            with autocast_for(device, precision):
                tokens = backbone.forward_tokens(images.to(device))
            tokens = tokens.float()
            chunks.append((tokens[:, 0] if pool == "cls" else tokens[:, prefix:].mean(dim=1)).cpu())
            if on_batch is not None:
                on_batch(len(images))
    return torch.cat(chunks).numpy().astype(np.float32)


def embed(input_path: str | Path, out: str | Path, weights: str | Path | None = None, run: str | Path | None = None,
          model: str | None = None, img_size: int | None = None, pool: str = "mean", batch_size: int = 32,
          precision: str = "32", progress: bool = True) -> tuple[Path, tuple[int, int]]:
    """Embed every image of ``input_path`` (an image, a folder or a packed folder) with the backbone of ``weights``
    or of a finished ``run``; return the written file and the ``(N, D)`` shape. Work is saved in parts of
    :data:`PART_IMAGES` images (:class:`EmbeddingParts`): rerunning an interrupted command embeds only what is left."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise SonofmError(f"--out {out}: the file name must end in {' or '.join(FORMATS)}")
    if out.suffix.lower() == ".parquet":  # checked before any image is embedded
        require_extra("pyarrow", f"--out {out.name}")
    if (weights is None) == (run is None):
        raise SonofmError("pass exactly one of --weights and --run")
    if run is not None:
        loaded = load_run_model(run)
        backbone: nn.Module = loaded.model.backbone
        size = loaded.img_size
        weights_file = RunFolder(Path(run)).model
    else:
        backbone = backbone_from_weights(weights, model, img_size)
        size = backbone.img_size
        weights_file = Path(weights)
    images: list[Path] | PackedImages
    if is_packed_folder(input_path):
        images = PackedImages(input_path)
        paths = images.original_paths()
    else:
        images = paths = find_input_images(Path(input_path))
    parts = EmbeddingParts(out, describe_job(paths, weights_file, model=model, pool=pool, img_size=size,
                                             precision=precision))
    starts = range(0, len(paths), PART_IMAGES)
    with progress_bar(total=len(paths), desc="embed", unit="img", disable=not progress) as bar:
        for index, start in enumerate(starts):
            chunk = range(start, min(start + PART_IMAGES, len(paths)))
            if parts.has(index):
                bar.update(len(chunk))
                continue
            parts.save(index, embed_images(backbone, images, size, pool, batch_size, precision, bar.update,
                                           positions=chunk))
    embeddings = parts.load_all(len(starts))
    write_embeddings(out, paths, embeddings)
    parts.remove()
    return out, embeddings.shape


def write_embeddings(out: Path, paths: list[Path], embeddings: np.ndarray) -> Path:
    """``.npz``: ``embeddings`` (N, D) float32, ``paths`` and ``names`` (str). ``.parquet``: columns ``path``,
    ``name`` and ``embedding`` (``fixed_size_list<float32>[D]``: no offsets, so no 2**31-value limit on N x D)."""
    path_strings = np.array([str(path) for path in paths])
    names = np.array([path.name for path in paths])
    if out.suffix.lower() == ".npz":
        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.savez(handle, embeddings=embeddings, paths=path_strings, names=names)

        return atomic_write(out, write)
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = embeddings.shape[1]
    values = pa.array(embeddings.reshape(-1), type=pa.float32())
    table = pa.table({
        "path": pa.array(path_strings.tolist(), type=pa.string()),
        "name": pa.array(names.tolist(), type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(values, dim),
    })
    return atomic_write(out, lambda tmp: pq.write_table(table, str(tmp)))
