"""The model card (``README.md``) of an exported model folder, in Hugging Face's conventions: a YAML front-matter block
(``library_name``, ``license``, ``tags``, ``pipeline_tag``, ``metrics``, ``model-index`` with the test metrics),
then Markdown generated from the run: the model, its use, training, data, test metrics, intended use and limits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from sonofm import __version__
from sonofm.export.run_facts import RunFacts
from sonofm.runs.model_folder import CARD_FILE, CONFIG_FILE, LIBRARY_NAME, WEIGHTS_FILE

TASK_NAMES = {"cls": "image classification", "seg": "semantic segmentation", "enhance": "image enhancement"}
PIPELINE_TAGS = {"cls": "image-classification", "seg": "image-segmentation", "enhance": "image-to-image"}
OUTPUTS = {"cls": "`{class: probability}` per image",
           "seg": "an `int64 (H, W)` class-id mask per image, at the image's own size",
           "enhance": "the restored `uint8 (H, W, 3)` image, at the image's own size"}
NO_LICENCE = "not recorded with the data; see the data set's licence"


def model_card(facts: RunFacts, metadata: dict[str, Any], name: str, licence: str) -> str:
    """The text of ``README.md`` for the model of ``facts.run`` (``metadata``: its model file's) shared as ``name``
    under the Hugging Face licence id ``licence``."""
    sections = [_front_matter(facts, metadata, name, licence), f"# {name}", _summary(facts, metadata),
                _use(metadata, name), _training(facts, metadata), _data(facts, metadata), _test_metrics(facts),
                _limits(facts, metadata), _files(facts)]
    return "\n\n".join(sections) + "\n"


def headline_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The test split's summary metrics (``test/<name>``, finite), by name: what ``model-index`` reports."""
    found = {}
    for key, value in metrics.items():
        split, _, metric = key.partition("/")
        if split == "test" and "/" not in metric and isinstance(value, int | float) and math.isfinite(value):
            found[metric] = float(value)
    return found


def _front_matter(facts: RunFacts, metadata: dict[str, Any], name: str, licence: str) -> str:
    task = metadata["task"]
    headline = headline_metrics(facts.metrics)
    result = {
        "task": {"type": PIPELINE_TAGS[task], "name": TASK_NAMES[task]},
        "dataset": {"name": _dataset_name(facts), "type": _dataset_name(facts), "split": "test"},
        "metrics": [{"type": metric, "value": round(value, 4), "name": f"test {metric}"}
                    for metric, value in headline.items()],
    }
    header = {
        "library_name": LIBRARY_NAME,
        "license": licence,
        "tags": [LIBRARY_NAME, "ultrasound", "medical-imaging", PIPELINE_TAGS[task], str(metadata["model"])],
        "pipeline_tag": PIPELINE_TAGS[task],
        "metrics": list(headline),
        "model-index": [{"name": name, "results": [result]}],
    }
    return f"---\n{yaml.safe_dump(header, sort_keys=False, allow_unicode=True)}---"


def _summary(facts: RunFacts, metadata: dict[str, Any]) -> str:
    task, size = metadata["task"], metadata["img_size"]
    head = f", {metadata['head']} head" if task == "seg" else ""
    text = (f"A sonofm {TASK_NAMES[task]} model: a `{metadata['model']}` backbone{head} at {size} x {size} px, "
            f"fine-tuned on `{_dataset_name(facts)}` from {_initial_weights(facts)}.")
    if task == "cls":
        text += f" Classes: {', '.join(metadata['classes'])}."
    elif task == "seg":
        text += " Mask classes: " + ", ".join(f"{i} = {c}" for i, c in enumerate(metadata["classes"])) + "."
    else:
        text += f" It undoes a `{metadata.get('degradation', {}).get('kind', 'unknown')}` degradation."
    return text


def _use(metadata: dict[str, Any], name: str) -> str:
    size = metadata["img_size"]
    code = ["```python", "import sonofm", "", f'model = sonofm.load("{name}")      # this folder',
            'model.predict(["image.png"])', "```"]
    scaling = ("scaled to [0, 1] (the model applies ImageNet's mean and standard deviation itself)"
               if metadata["task"] == "enhance" else "normalised with ImageNet's mean and standard deviation")
    text = (f"or `sonofm predict --model {name} --input images/ --out predictions/`. `predict` returns "
            f"{OUTPUTS[metadata['task']]}. Images (paths, PIL images or uint8 arrays) are read as RGB, resized to "
            f"{size} x {size} px and {scaling}, as `{CONFIG_FILE}`'s `preprocessing` records for other tools.")
    return "\n".join(["## Use", "", *code, "", text])


def _training(facts: RunFacts, metadata: dict[str, Any]) -> str:
    config = facts.config
    rows = [("run", f"`{facts.run}`"), ("initial weights", _initial_weights(facts)),
            ("backbone", f"`{metadata['model']}` {_arguments(metadata.get('model_args'))}".rstrip())]
    if metadata["task"] == "seg":
        rows.append(("head", f"`{metadata['head']}` {_arguments(metadata.get('head_args'))}".rstrip()))
    for key in ("mode", "epochs", "batch_size", "img_size", "train_fraction", "seed"):
        if key in config:
            rows.append((key.replace("_", " "), f"`{config[key]}`"))
    if isinstance(config.get("optim"), dict):
        rows.append(("optimiser", f"`{config['optim'].get('optimizer')}`, peak LR `{config['optim'].get('lr')}`"))
    if "best_epoch" in facts.metrics:
        rows.append(("selected epoch", f"{int(facts.metrics['best_epoch'])} (counted from 0)"))
    return (f"## Training\n\n{_table(('setting', 'value'), rows)}\n\n"
            f"The full training config is `{CONFIG_FILE}`'s `training`.")


def _data(facts: RunFacts, metadata: dict[str, Any]) -> str:
    rows = [(split, str(size.images), str(size.groups)) for split, size in facts.splits.items()]
    lines = ["## Data", "", f"Data set: `{facts.config.get('data', 'unknown')}` (as the run recorded it). Images "
             "and groups (patients, videos or single images, each kept within one split) per split, from the run's "
             "`split.csv`:", "", _table(("split", "images", "groups"), rows)]
    if metadata["task"] == "cls" and facts.train_labels:
        counts = [f"{name} {facts.train_labels.get(str(index), 0)}" for index, name in enumerate(metadata["classes"])]
        lines += ["", f"Training images per class: {', '.join(counts)}."]
    lines += ["", f"Licence of the data: {facts.data_licence or NO_LICENCE}."]
    return "\n".join(lines)


def _test_metrics(facts: RunFacts) -> str:
    rows = [(key.partition("/")[2], _number(value)) for key, value in facts.metrics.items() if key.startswith("test/")]
    if not rows:
        return "## Test metrics\n\nThe run has no test split, so no test metrics."
    test = facts.splits.get("test")
    where = f" ({test.images} images in {test.groups} groups)" if test else ""
    return (f"## Test metrics\n\nOn the run's held-out test split{where}, never used for training or model "
            f"selection:\n\n" + _table(("metric", "value"), rows))


def _limits(facts: RunFacts, metadata: dict[str, Any]) -> str:
    train = facts.splits.get("train")
    images = f"{train.images} images ({train.groups} groups)" if train else "the images"
    lines = [
        "## Intended use and limits", "",
        "- Research use only. This is not a medical device: it is not validated for, and must not be used in, "
        "diagnosis, treatment or any other clinical decision.",
        f"- Trained on {images} of one data set (`{_dataset_name(facts)}`) and tested on held-out images of the "
        "same data set. Performance on other scanners, probes, presets, sites and populations is unknown: measure "
        "it on your own data first (`sonofm evaluate` needs the run folder; `predict` works from this folder).",
        f"- Inputs are resized to {metadata['img_size']} x {metadata['img_size']} px, so fine structures smaller "
        "than a few pixels at that size are lost.",
    ]
    if metadata["task"] == "cls":
        lines.append(f"- It always answers one of its {len(metadata['classes'])} classes, also for an image of none "
                     "of them; its probabilities are not calibrated.")
    lines.append("- The weights carry what they learnt from their training data and initial weights: their terms "
                 "(licence above) may restrict how the model can be used or shared.")
    return "\n".join(lines)


def _files(facts: RunFacts) -> str:
    return "\n".join([
        "## Files", "",
        f"- `{WEIGHTS_FILE}`: the weights, with the metadata that rebuilds the model",
        f"- `{CONFIG_FILE}`: the model (task, backbone, classes, input size), its preprocessing, the training config",
        f"- `{CARD_FILE}`: this card", "",
        f"Written by sonofm {__version__} (`sonofm export --format folder`) from run `{facts.run}`.",
    ])


def _initial_weights(facts: RunFacts) -> str:
    weights = facts.config.get("weights")
    return f"the weights `{weights}`" if weights else "random initialisation (no pretrained weights)"


def _dataset_name(facts: RunFacts) -> str:
    data = str(facts.config.get("data") or "")
    return Path(data).name or data or "unknown"


def _arguments(values: Any) -> str:
    return f"({', '.join(f'{key} {value}' for key, value in values.items())})" if values else ""


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and math.isfinite(value) else str(value)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])
