"""Typed run configs: one override pass (preset, flags, ``--set key=value``) onto a dataclass, and YAML round trips."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sonofm.errors import SonofmError

ConfigT = TypeVar("ConfigT")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dict (YAML-safe) of a dataclass config."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[ConfigT], data: dict[str, Any], where: str = "") -> ConfigT:
    """Build ``cls`` from a nested dict; an unknown key raises SonofmError naming it and the valid keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise SonofmError(f"unknown config key '{where}{key}'; valid keys: {', '.join(sorted(fields))}")
        field_type = hints[key]
        if dataclasses.is_dataclass(field_type):
            if not isinstance(value, dict):
                raise SonofmError(f"config key '{where}{key}' is a section; set its members, e.g. {key}.<name>=...")
            value = config_from_dict(field_type, value, where=f"{where}{key}.")
        else:
            value = _coerce(value, field_type, f"{where}{key}")
        kwargs[key] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class Override:
    """One assignment ``key = value`` (dotted key for a section's member); ``source`` says where it came from in
    error messages (``--set epochs=3``, ``--lr``, ``preset uscl: epochs=30``). ``value`` is already typed: a flag's
    parsed value, or the YAML value of ``--set`` text (see :func:`parse_override`)."""

    key: str
    value: Any
    source: str


def parse_override(item: str, source: str = "--set") -> Override:
    """``key=value`` text as an :class:`Override` with its value parsed as YAML (``1e-3``, ``true``, ``[1, 2]``)."""
    if "=" not in item:
        raise SonofmError(f"{source} expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    return Override(key.strip(), _parse_yaml_value(raw), f"{source} {item}")


def resolve_config(config: ConfigT, overrides: Iterable[Override]) -> ConfigT:
    """``config`` with ``overrides`` applied in order (a later one wins) to one dict, turned into a typed config once.

    Every value is checked and converted against its field's type (int -> float, list -> tuple) as a config file's
    would be, so a wrong type raises the same SonofmError naming the key whatever its source.
    """
    data = config_to_dict(config)
    for override in overrides:
        _assign(data, override)
    return config_from_dict(type(config), data)


def save_config(config: Any, path: str | Path) -> None:
    from sonofm.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def load_config(cls: type[ConfigT], path: str | Path) -> ConfigT:
    """``cls`` from the YAML file ``path`` (a run's ``config.yaml``); SonofmError naming the file and the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SonofmError(f"cannot read config {path}: {error}") from None
    if not isinstance(data, dict):
        raise SonofmError(f"config {path} must hold key: value pairs, found a {type(data).__name__}")
    try:
        return config_from_dict(cls, data)
    except SonofmError as error:
        raise SonofmError(f"config {path}: {error}") from None


def _parse_yaml_value(raw: str) -> Any:
    """The YAML value ``raw`` spells; empty text is the empty string and unparsable text stays as written."""
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _assign(data: dict[str, Any], override: Override) -> None:
    """Set ``override.key`` in the nested dict ``data``; an unknown section or key raises SonofmError naming it."""
    parts = override.key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise SonofmError(f"unknown config section '{'.'.join(parts[: depth + 1])}' in {override.source}")
        node = node[part]
    if parts[-1] not in node:
        valid = ", ".join(sorted(node))
        raise SonofmError(f"unknown config key '{override.key}' in {override.source}; valid keys here: {valid}")
    node[parts[-1]] = override.value


def _coerce(value: Any, field_type: Any, key: str) -> Any:
    """Check/convert a scalar against a field annotation (int, float, str, bool, Optional, tuple, list)."""
    origin = typing.get_origin(field_type)
    args = typing.get_args(field_type)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last_error: SonofmError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except SonofmError as error:
                last_error = error
        raise last_error or SonofmError(f"bad value for '{key}': {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise SonofmError(f"config key '{key}' expects a mapping such as {{depth: 4}}, got {value!r}")
        return dict(value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise SonofmError(f"config key '{key}' expects a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if field_type is Any:
        return value
    if field_type is bool:
        if isinstance(value, bool):
            return value
        raise SonofmError(f"config key '{key}' expects true/false, got {value!r}")
    if field_type is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    if field_type is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if field_type is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(field_type, type) and isinstance(value, field_type):
        return value
    name = getattr(field_type, "__name__", str(field_type))
    raise SonofmError(f"config key '{key}' expects {name}, got {value!r}")
