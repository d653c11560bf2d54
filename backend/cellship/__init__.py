"""cellship: ship a notebook cell as a distributed TensorFlow job.

This module stays light on import (no TensorFlow, no IPython): the supervisor and the
CLI import it too. ``%load_ext cellship`` loads the magics from ``cellship_magics``.
"""

from __future__ import annotations

from typing import Any

from .errors import (BackendError, CellshipError, JobFailed, JobNotFound, MissingDependency,
                     ProgramError, UsageError)

__version__ = "0.1.0"

__all__ = ["submit", "submit_script", "jobs", "get_job", "last_job", "Job", "job",
           "batch", "batches", "get_batch", "Batch", "record", "CellshipError",
           "UsageError", "ProgramError", "JobNotFound", "JobFailed", "BackendError",
           "MissingDependency", "load_ipython_extension", "__version__"]

_LAZY = {"submit": "api", "submit_script": "api", "jobs": "api", "get_job": "api",
         "last_job": "api", "Job": "api", "job": None,
         "batch": "sweep.api", "batches": "sweep.api", "get_batch": "sweep.api",
         "Batch": "sweep.api", "record": "scraps",
         "deploy": "deployment", "undeploy": "deployment", "deployments": "deployment"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cellship' has no attribute {name!r}")
    import importlib

    if _LAZY[name] is None:
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext cellship``: register the magics (a thin layer in cellship_magics)."""
    from cellship_magics import load_ipython_extension as _load

    _load(ipython)
