"""Training backends resolved by name: built-ins plus the ``cellship.backends`` entry point
group (:mod:`cellship.plugins`), so a third party can add one without touching cellship."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cellship.plugins import Plugins
from cellship.train.backend import Backend

if TYPE_CHECKING:
    from cellship.store import Store

GROUP = "cellship.backends"
BACKENDS: Plugins[Backend] = Plugins(
    GROUP,
    {"local": "cellship.train.local.backend:LocalBackend",
     "kubernetes": "cellship.train.kubernetes.backend:KubernetesBackend"},
    base=Backend,
    unknown="Unknown backend {name}; available: {available}.")


def available() -> dict[str, str]:
    """name -> "module:Class" for every backend that can be loaded."""
    return BACKENDS.specs()


def get_backend(name: str, store: Store | None = None) -> Backend:
    """A new backend instance of that name (a UsageError naming the available ones if
    there is none)."""
    return BACKENDS.load(name)(store)
