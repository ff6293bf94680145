"""Loading backbone weights from local files with a full account of every key, and saving them as safetensors."""

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from sonofm.errors import SonofmError, first_line
from sonofm.models.state_dict_file import WeightsFile, read_weights_file, write_safetensors_atomic
from sonofm.models.timm_vit import TimmViT
from sonofm.models.usfm_checkpoint import adapt_usfm_state_dict
from sonofm.models.usfm_vit import UsfmViT

OPTIONAL_KEYS = {"mask_token": "only used by masked image modelling; keeps its initial value"}
HEAD_ROOTS = ("head", "fc_norm", "fc")
SHOWN_KEYS = 5


@dataclass
class LoadReport:
    """What happened to every key of a weights file (and every key of the model)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # file key -> why it was not loaded
    resized: dict[str, str] = field(default_factory=dict)  # key -> how it was fitted to the model's patch grid
    new: dict[str, str] = field(default_factory=dict)  # model key the file cannot hold -> the module that adds it

    def summary(self) -> str:
        """A few lines for logs: counts, then each distinct reason with how many keys it covers."""
        lines = [
            f"{self.path}: loaded {len(self.loaded)} tensors, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, ignored {len(self.ignored)}, resized {len(self.resized)}"
            + (f", new {len(self.new)}" if self.new else "")
        ]
        for key in self.missing:
            lines.append(f"  missing {key} ({OPTIONAL_KEYS.get(key, 'required')})")
        for label, notes in (("ignored", self.ignored), ("resized", self.resized), ("new", self.new)):
            for reason, count in Counter(notes.values()).items():
                example = next(key for key, note in notes.items() if note == reason)
                lines.append(f"  {label} {count} ({reason}), e.g. {example}")
        return "\n".join(lines)


def load_backbone_weights(model: nn.Module, source: str | Path | WeightsFile) -> LoadReport:
    """Load a local weights file (or one already read, to load into several models) into ``model``; refuse any
    missing, unexpected or mis-shaped tensor that matters.

    Accepts our safetensors files, flat torch state dicts (the official ``USFM_latest.pth`` included) and
    checkpoints wrapping one (``state_dict``/``model``/``module``/``encoder`` containers; key prefixes such as
    ``module.``, ``encoder.`` or Lightning's ``model.backbone.`` are found and stripped). Relative position tables
    and ViT position embeddings are resampled when the file was trained on another patch grid.
    """
    weights = source if isinstance(source, WeightsFile) else read_weights_file(source)
    _check_backbone_name(weights, model)
    expected = model.state_dict()
    report = LoadReport(str(weights.path), ignored=dict(weights.set_aside))
    state, outside = _strip_key_prefix(weights.tensors, set(expected))
    report.ignored |= outside
    try:
        consumed, report.resized = _fit_to_model(state, model)
    except SonofmError as error:
        raise SonofmError(f"{weights.path}: {error}") from None
    report.ignored |= consumed
    for key in [key for key in state if key not in expected]:
        reason = _harmless_reason(key)
        if reason is not None:
            report.ignored[key] = reason
            del state[key]
    report.missing = [key for key in expected if key not in state]
    report.unexpected = [key for key in state if key not in expected]
    _refuse_mismatches(report, state, expected, model)
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor that cannot be copied into its parameter (dtype, layout)
        raise SonofmError(f"{weights.path}: cannot copy its tensors into the model ({first_line(error)})") from None
    report.loaded = list(state)
    return report


def save_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Write the backbone's state dict to a ``.safetensors`` file with its registry name and image size."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    metadata = {"sonofm_backbone": model.backbone_name, "img_size": str(model.img_size)}
    write_safetensors_atomic(tensors, path, metadata)


def _check_backbone_name(weights: WeightsFile, model: nn.Module) -> None:
    saved_name = weights.metadata.get("sonofm_backbone", "")
    if saved_name and model.backbone_name and saved_name != model.backbone_name:
        raise SonofmError(
            f"{weights.path} holds weights of backbone '{saved_name}', not '{model.backbone_name}'; "
            f"pass --model {saved_name}"
        )


def _strip_key_prefix(tensors: dict[str, Tensor], wanted: set[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Keep the keys under the prefix (``module.``, ``backbone.``, ...) that most model keys sit under, stripped.

    Keys outside that prefix (a task head, a decoder) are returned as ignored, with the reason.
    """
    counts = Counter(
        key[: cut + 1] for key in tensors for cut, char in enumerate(key) if char == "." and key[cut + 1 :] in wanted
    )
    counts[""] = len(wanted & tensors.keys())
    prefix = max(sorted(counts, key=len), key=counts.__getitem__)  # ties: the shortest prefix
    state = {key.removeprefix(prefix): value for key, value in tensors.items() if key.startswith(prefix)}
    reason = f"outside the '{prefix}' prefix, not part of the backbone"
    return state, {key: reason for key in tensors if not key.startswith(prefix)}


def _fit_to_model(state: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, str], dict[str, str]]:
    """Rewrite ``state`` in place for the model's layout and patch grid; returns (consumed, resized) notes.

    A model may fit files itself with ``fit_state_dict(state)`` returning the same notes (timm passthrough backbones).
    """
    if hasattr(model, "fit_state_dict"):
        return model.fit_state_dict(state)
    if isinstance(model, UsfmViT):
        return adapt_usfm_state_dict(state, model)
    if isinstance(model, TimmViT):
        return {}, _fit_pos_embed(state, model)
    return {}, {}


def _fit_pos_embed(state: dict[str, Tensor], model: TimmViT) -> dict[str, str]:
    """Resample a ViT position embedding ``(1, 1 + n*n, C)`` learned on another square grid (bicubic)."""
    pos_embed = state.get("pos_embed")
    if pos_embed is None or pos_embed.ndim != 3 or pos_embed.shape[1] == model.pos_embed.shape[1]:
        return {}
    side = math.isqrt(pos_embed.shape[1] - model.num_prefix_tokens)
    if side * side != pos_embed.shape[1] - model.num_prefix_tokens:
        return {}  # left to the shape check, which names the key
    state["pos_embed"] = resample_abs_pos_embed(
        pos_embed, new_size=list(model.grid_size), old_size=[side, side], num_prefix_tokens=model.num_prefix_tokens
    )
    return {"pos_embed": f"resampled from a {side}x{side} to a {model.grid_size[0]}x{model.grid_size[1]} patch grid"}


def _harmless_reason(key: str) -> str | None:
    """Why an extra key may be left out, or None if it matters."""
    if key.endswith("relative_position_index"):
        return "recomputed from the patch grid"
    root = key.partition(".")[0]
    if root in HEAD_ROOTS:
        return "task head, not part of the backbone"
    if root == "decoder":
        return "pretraining decoder, not part of the backbone"
    return None


def _refuse_mismatches(
    report: LoadReport, state: dict[str, Tensor], expected: dict[str, Tensor], model: nn.Module
) -> None:
    """Raise on required keys the file lacks, keys the model lacks, and shapes that differ."""
    required_missing = [key for key in report.missing if key not in OPTIONAL_KEYS]
    if required_missing or report.unexpected:
        name = model.backbone_name or type(model).__name__
        problems = []
        if required_missing:
            problems.append(f"missing {len(required_missing)} keys ({_first_keys(required_missing)})")
        if report.unexpected:
            problems.append(f"unexpected {len(report.unexpected)} keys ({_first_keys(report.unexpected)})")
        raise SonofmError(f"{report.path} does not fit backbone '{name}': {'; '.join(problems)}")
    wrong = [key for key in state if state[key].shape != expected[key].shape]
    if wrong:
        key = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise SonofmError(
            f"{report.path}: {key} has shape {tuple(state[key].shape)} in the file "
            f"but {tuple(expected[key].shape)} in the model{more}"
        )


def _first_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")
