"""Object metadata every feature's objects share: the managed-by label and ownerReferences.

Every object cellship creates carries :data:`MANAGED_BY`, so ``cellship jobs`` and
``cellship deployments`` find them by label and cellship never touches what it did not
make. Dependents point at their owner with :func:`owner_reference`, so deleting the owner
(one call) lets the garbage collector remove the rest.
"""

from __future__ import annotations

from typing import Any, Mapping

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = {MANAGED_BY_LABEL: "cellship"}
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}=cellship"


def is_managed(obj: Mapping[str, Any]) -> bool:
    """Whether cellship made ``obj`` (it carries the managed-by label)."""
    return (obj.get("metadata", {}).get("labels") or {}).get(MANAGED_BY_LABEL) == "cellship"


def owner_reference(owner: Mapping[str, Any], controller: bool = False) -> dict[str, Any]:
    """An ownerReference to a created object (its dict as the API returned it, uid set).
    ``controller``: the owner is the dependent's managing controller (a Deployment of its
    Service), which ``kubectl`` shows and the garbage collector honours the same."""
    meta = owner["metadata"]
    if not meta.get("uid"):
        raise ValueError("the owner has no uid yet: create it before its dependents")
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
           "uid": meta["uid"]}
    if controller:
        ref["controller"] = True
    return ref | {"blockOwnerDeletion": True}
