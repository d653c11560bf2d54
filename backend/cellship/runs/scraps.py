"""Values a batch run recorded with ``cellship.record(name, value)``, read back from the
executed notebook.

The writer (:mod:`cellship_magics.record`) runs in the notebook's kernel and writes them the
way scrapbook's ``glue`` does (a display output with the
``application/scrapbook.scrap.json+json`` mime type), so notebooks that already use
scrapbook, and tools that read scraps, work with cellship batches and vice versa.
"""

from __future__ import annotations

from typing import Any

SCRAP_MIME = "application/scrapbook.scrap.json+json"


def scraps_of(notebook: Any) -> dict[str, Any]:
    """The values recorded in an executed notebook (nbformat node), last one wins."""
    values: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data", {}).get(SCRAP_MIME)
            if isinstance(data, dict) and "name" in data:
                values[data["name"]] = data.get("data")
    return values
