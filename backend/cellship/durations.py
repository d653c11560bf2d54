"""Durations as users write them (``90``, ``90s``, ``10m``, ``1.5h``), for every feature.

A top-level module of its own because training options, batch runs and the Kubernetes
flags all read durations, and none of them may import the others for it.
"""

from __future__ import annotations

import re

from cellship.errors import UsageError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")
_DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``90`` / ``90s`` / ``10m`` / ``1.5h`` -> seconds."""
    match = _DURATION_RE.match(str(text))
    if not match:
        raise UsageError(f"{text!r} is not a duration; use seconds or a unit, e.g. 90, 90s, 10m, 1h.")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
