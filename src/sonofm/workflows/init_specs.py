"""``--init`` specifications of ``experiment compare``: where each compared backbone starts from.

``[NAME=]scratch`` (random init), ``[NAME=]mim:RUN`` (a finished ``pretrain mim`` run's exported encoder),
``[NAME=]aclus:RUN`` (a finished ``pretrain aclus`` run's ResNet), ``[NAME=]weights:FILE`` (a local backbone weights
file). NAME (default: the kind) names the init's run folders and rows; names must differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sonofm.errors import SonofmError
from sonofm.runs.config import load_config
from sonofm.runs.run_folder import RunFolder
from sonofm.tasks.aclus.pretrain import AclusPretrainConfig
from sonofm.tasks.mim.pretrain import MimPretrainConfig

PRETRAINING = {"mim": MimPretrainConfig, "aclus": AclusPretrainConfig}  # kind -> the config its runs save
KINDS = ("scratch", *PRETRAINING, "weights")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
FORMS = "scratch, mim:RUN, aclus:RUN or weights:FILE, optionally named NAME=..."


@dataclass(frozen=True)
class InitSpec:
    """One ``--init``: its name, kind (one of ``KINDS``), source (the run folder or file; None for scratch) and
    the text it was given as."""

    name: str
    kind: str
    source: str | None
    text: str


def parse_init(text: str) -> InitSpec:
    """The :class:`InitSpec` of ``--init text``; SonofmError naming it when it is none of the accepted forms."""
    label, equals, rest = text.partition("=")
    if not equals or ":" in label:  # no label ('=' may belong to a path)
        label, rest = "", text
    kind, colon, source = rest.partition(":")
    name = label or kind
    if kind not in KINDS:
        raise SonofmError(f"--init {text}: unknown initialisation {kind!r}; use {FORMS}")
    if kind == "scratch" and colon:
        raise SonofmError(f"--init {text}: scratch takes no :PATH; use {FORMS}")
    if kind != "scratch" and not source:
        raise SonofmError(f"--init {text}: {kind} needs :PATH; use {FORMS}")
    if not NAME.fullmatch(name):
        raise SonofmError(f"--init {text}: the name {name!r} must be letters, digits, '_', '.' or '-'")
    return InitSpec(name, kind, source or None, text)


def init_checks(texts: list[str]) -> list[tuple[bool, str]]:
    """``(ok, message)`` pairs of the ``--init`` list: at least two, each well formed, names distinct."""
    if len(texts) < 2:
        return [(False, f"give at least two --init to compare (e.g. --init scratch --init mim:RUN), got {len(texts)}")]
    try:
        names = [parse_init(text).name for text in texts]
    except SonofmError as error:
        return [(False, str(error))]
    twice = next((name for name in names if names.count(name) > 1), None)
    return [(twice is None, f"--init: two initialisations are named {twice!r}; name them, e.g. --init "
                            f"{twice}_a=... --init {twice}_b=...")]


def reference_init(specs: list[InitSpec]) -> InitSpec:
    """The init the others are compared with: the first ``scratch``, else the first one."""
    return next((spec for spec in specs if spec.kind == "scratch"), specs[0])


def init_weights(spec: InitSpec) -> str | None:
    """The backbone weights file ``spec`` starts from (None for scratch); SonofmError naming the ``--init`` when the
    file is missing or the run is not a finished run of its pretraining method."""
    if spec.source is None:
        return None
    if spec.kind == "weights":
        if not Path(spec.source).is_file():
            raise SonofmError(f"--init {spec.text}: {spec.source} is not a file")
        return spec.source
    run = RunFolder(Path(spec.source))
    if not run.config.is_file():
        raise SonofmError(f"--init {spec.text}: {run.path} is not a sonofm run folder (no config.yaml)")
    try:
        load_config(PRETRAINING[spec.kind], run.config)
    except SonofmError:
        raise SonofmError(f"--init {spec.text}: {run.path} is not a `pretrain {spec.kind}` run (its config.yaml is "
                          f"not a `pretrain {spec.kind}` config)") from None
    if not (run.is_finished and run.model.is_file()):
        raise SonofmError(f"--init {spec.text}: run {run.path} is not finished (no metrics.json or "
                          f"model.safetensors); finish it first (rerun its command)")
    return str(run.model)
