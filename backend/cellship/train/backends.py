"""Backends resolved by name: built-ins plus the ``cellship.backends`` entry point group
(how papermill finds engines), so a third party can add one without touching cellship."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from cellship.errors import UsageError

if TYPE_CHECKING:
    from cellship.store import Store
    from cellship.train.backend import Backend

_BUILTIN = {"local": "cellship.train.local.backend:LocalBackend",
            "kubernetes": "cellship.train.kubernetes.backend:KubernetesBackend"}


def available() -> dict[str, str]:
    """name -> "module:Class" for every backend that can be loaded."""
    found = dict(_BUILTIN)
    for ep in entry_points(group="cellship.backends"):
        found.setdefault(ep.name, ep.value)
    return found


def get_backend(name: str, store: "Store | None" = None) -> "Backend":
    known = available()
    if name not in known:
        raise UsageError(f"Unknown backend {name!r}; available: {', '.join(sorted(known))}.")
    module_name, _, class_name = known[name].partition(":")
    import importlib

    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(store)
