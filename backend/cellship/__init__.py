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

__all__ = ["submit", "submit_script", "jobs", "get_job", "last_job", "Job", "job", "models",
           "batch", "batches", "get_batch", "Batch", "record", "release", "rollback",
           "CellshipError",
           "UsageError", "ProgramError", "JobNotFound", "JobFailed", "BackendError",
           "MissingDependency", "load_ipython_extension", "compare", "__version__"]

# public name -> module that defines it (imported on first use, so ``import cellship`` stays
# light); ``job`` is the module of in-job helpers itself.
_LAZY = {"submit": "cellship.train.api", "submit_script": "cellship.train.api",
         "jobs": "cellship.train.api", "get_job": "cellship.train.api",
         "last_job": "cellship.train.api", "Job": "cellship.train.api",
         "job": "cellship.inside.job",
         "models": "cellship.serve.export",  # exported models: export_*, list_models, ...
         "batch": "cellship.runs.api", "batches": "cellship.runs.api",
         "get_batch": "cellship.runs.api", "Batch": "cellship.runs.api",
         "record": "cellship_magics.record",  # kernel-side: it displays through IPython
         "deploy": "cellship.deployment", "undeploy": "cellship.deployment",
         "deployments": "cellship.deployment",
         # the package is callable: cellship.release(...) runs cellship.release.pipeline.release
         "release": "cellship.release", "rollback": "cellship.release.pipeline",
         "compare": "cellship.comparison"}  # not cellship.compare: it would shadow the function
_MODULES = {"job", "models", "release"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cellship' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LAZY[name])
    return module if name in _MODULES else getattr(module, name)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext cellship``: register the magics (a thin layer in cellship_magics)."""
    from cellship_magics import load_ipython_extension as _load

    _load(ipython)
