"""Where cellship keeps its state on this machine.

``CELLSHIP_HOME`` wins; otherwise the platform's user data dir (platformdirs, which
respects ``XDG_DATA_HOME`` on Linux) + ``cellship``.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """The root of cellship's data: the job store and every job's directory."""
    override = os.environ.get("CELLSHIP_HOME")
    root = Path(override).expanduser() if override else Path(platformdirs.user_data_dir("cellship"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def store_path() -> Path:
    return home() / "cellship.db"


def jobs_dir() -> Path:
    path = home() / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path
