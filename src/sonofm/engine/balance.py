"""``--balance`` for pretraining: the source of each image and the share of an epoch each source gets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sonofm.data.packed import PackedImages
from sonofm.data.source_weights import read_source_weights
from sonofm.data.unlabeled import source_ids
from sonofm.engine.config import PretrainingConfig
from sonofm.engine.trainer import Echo
from sonofm.errors import SonofmError


def balanced_sources(files: list[Path] | PackedImages, config: PretrainingConfig, echo: Echo
                     ) -> tuple[list[int] | None, list[float] | None]:
    """With ``--balance``: the source of each image (its ``--data`` folder, or the packed folder's source ids) and
    the sources' weights (None: equal), after one line on the balance; else ``(None, None)``."""
    if config.balance is None:
        return None, None
    if isinstance(files, PackedImages):
        ids, names = files.sources.tolist(), files.source_names
    else:
        ids, names = source_ids(files, config.data)
    counts = Counter(ids)
    present = sorted(counts)  # a folder whose images were all duplicates of others has none
    every = [1.0] * len(names) if config.balance == "source" else read_source_weights(config.balance, names)
    weights = [every[source] for source in present]
    if not any(weights):
        raise SonofmError(f"--balance {config.balance}: every source that has images weighs 0")
    draws = [len(files) * weight / sum(weights) for weight in weights]
    echo(f"balanced over {len(present)} sources, draws per epoch: " + ", ".join(
        f"{names[source]} ({counts[source]} images, about {share:.0f} draws)" for source, share in zip(present, draws)))
    return ids, weights
