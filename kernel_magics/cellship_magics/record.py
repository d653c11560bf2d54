"""``cellship.record(name, value)``: keep a value a notebook computed, for batch results.

Kernel-side (it publishes a display output through IPython), so it lives with the magics;
the batch runner reads the values back with :func:`cellship.runs.scraps.scraps_of`.
"""

from __future__ import annotations

import json
from typing import Any

from cellship.errors import UsageError
from cellship.runs.scraps import SCRAP_MIME


def _jsonable(name: str, value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy / tensor scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise UsageError(f"record({name!r}, ...): the value must be JSON-serialisable "
                         f"(numbers, strings, lists, dicts); got {type(value).__name__}: {err}") from None
    return value


def record(name: str, value: Any) -> Any:
    """Record ``value`` under ``name`` in this notebook's output (shown in batch results).

    Outside a kernel it does nothing but return the value.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise UsageError(f"record(name, value): name must be an identifier, got {name!r}.")
    value = _jsonable(name, value)
    try:
        from IPython import get_ipython  # only inside a kernel; the library stays IPython-free
        from IPython.display import display
    except ImportError:
        return value
    if get_ipython() is None:
        return value
    data = {"name": name, "data": value, "encoder": "json", "version": 1}
    display({SCRAP_MIME: data}, metadata={"scrapbook": {"name": name, "data": True,
                                                       "display": False}}, raw=True)
    return value
