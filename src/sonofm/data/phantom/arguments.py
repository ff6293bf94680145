"""Argument checks shared by the phantom's renderer and data-set writer."""

from __future__ import annotations

import numpy as np

from sonofm.errors import SonofmError


def check_int(name: str, value: int, minimum: int) -> int:
    """`value` as an int; a :class:`SonofmError` naming `name` unless it is an integer (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SonofmError(f"phantom {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
