"""cellship: ship a notebook cell as a distributed TensorFlow job.

This module stays light on import (no TensorFlow, no IPython): the supervisor and the
CLI import it too. ``%load_ext cellship`` loads the magics from ``cellship_magics``.
"""

from __future__ import annotations

from typing import Any

from cellship.errors import (
    BackendError,
    CellshipError,
    JobFailed,
    JobNotFound,
    MissingDependency,
    ProgramError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = ["submit", "submit_script", "jobs", "get_job", "last_job", "Job", "job",
           "batch", "batches", "get_batch", "Batch", "record", "CellshipError",
           "UsageError", "ProgramError", "JobNotFound", "JobFailed", "BackendError",
           "MissingDependency", "load_ipython_extension", "__version__"]

# public name -> module that defines it (imported on first use, so ``import cellship`` stays
# light); ``job`` is the module of in-job helpers itself.
_LAZY = {"submit": "train.api", "submit_script": "train.api", "jobs": "train.api",
         "get_job": "train.api", "last_job": "train.api", "Job": "train.api",
         "job": "inside.job",
         "batch": "runs.api", "batches": "runs.api", "get_batch": "runs.api",
         "Batch": "runs.api", "record": "runs.scraps",
         "deploy": "deployment", "undeploy": "deployment", "deployments": "deployment"}
_MODULES = {"job"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cellship' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    return module if name in _MODULES else getattr(module, name)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext cellship``: register the magics (a thin layer in cellship_magics)."""
    from cellship_magics import load_ipython_extension as _load

    _load(ipython)
