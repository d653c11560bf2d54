"""``cellship.record(name, value)``: keep a value a notebook computed, for batch results.

Written the way scrapbook's ``glue`` writes it (a display output with the
``application/scrapbook.scrap.json+json`` mime type), so notebooks that already use
scrapbook, and tools that read scraps, work with cellship batches and vice versa.
"""

from __future__ import annotations

import json
import math
from typing import Any

from cellship.errors import UsageError

SCRAP_MIME = "application/scrapbook.scrap.json+json"


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


def scraps_of(notebook: Any) -> dict[str, Any]:
    """The values recorded in an executed notebook (nbformat node), last one wins."""
    values: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data", {}).get(SCRAP_MIME)
            if isinstance(data, dict) and "name" in data:
                values[data["name"]] = data.get("data")
    return values


def clean_number(value: Any) -> Any:
    """NaN as None, so tables and JSON stay valid."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
