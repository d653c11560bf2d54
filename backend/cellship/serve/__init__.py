"""TF-Serving-compatible model serving (REST API v1) with dynamic batching.

Only the serving process imports TensorFlow: this package's ``__init__``, ``codec/``,
``batching`` and ``errors`` stay TensorFlow-free so the CLI, the Jupyter server and the
model repository can import them cheaply. ``signatures``, ``repository`` and ``server``
load models and so import TensorFlow.
"""

from __future__ import annotations

from typing import Any

from cellship.serve.errors import RequestError

DEFAULT_PORT = 8501  # TensorFlow Serving's REST port: existing clients' default URLs work

__all__ = ["RequestError", "DEFAULT_PORT", "start_server", "ServerProcess", "running", "stop"]


def __getattr__(name: str) -> Any:
    if name in ("start_server", "ServerProcess"):  # lazy: keeps ``import cellship.serve`` light
        from cellship.serve import process

        return getattr(process, name)
    if name in ("running", "stop"):  # the registry of running ``cellship serve`` processes
        from cellship.serve import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'cellship.serve' has no attribute {name!r}")
