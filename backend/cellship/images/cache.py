"""Where image building keeps what is expensive to make and never changes for the same
inputs: dependency layers (minutes to build, ~1-2 GB) and downloaded base blobs.

``$CELLSHIP_CACHE`` wins, else the platform's user cache dir (``~/.cache/cellship``). It is
separate from the cellship home on purpose: the home holds state (jobs, models), the cache
holds only things that can be rebuilt, so deleting it is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir(*parts: str) -> Path:
    override = os.environ.get("CELLSHIP_CACHE")
    root = Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("cellship"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
