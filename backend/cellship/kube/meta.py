"""Object metadata every feature's objects share: the managed-by and user labels, and
ownerReferences.

Every object cellship creates carries :func:`managed_labels`: the managed-by label, so
``cellship jobs`` and ``cellship deployments`` find them by label and cellship never
touches what it did not make, and ``cellship.io/user``, the person who made it, so a
listing says whose work each object is (on a shared hub, every notebook pod runs as the
same OS user: ``$JUPYTERHUB_USER`` names the person). Labels are no access control: the
namespaces and Roles of ``cellship rbac`` keep users apart. Dependents point at their
owner with :func:`owner_reference`, so deleting the owner (one call) lets the garbage
collector remove the rest.
"""

from __future__ import annotations

import getpass
import os
from typing import Any, Mapping

from cellship.kube.names import label_value

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = {MANAGED_BY_LABEL: "cellship"}
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}=cellship"
USER_LABEL = "cellship.io/user"
HUB_USER_ENV = "JUPYTERHUB_USER"  # what JupyterHub's spawners set in a single-user server
UNKNOWN_USER = "unknown"


def current_user() -> str:
    """Who submits, as a label value: ``$JUPYTERHUB_USER``, else the OS user, else the uid
    (a container's uid may have no passwd entry). An e-mail-like hub name becomes
    label-safe (``alice@example.org`` -> ``alice-example.org``)."""
    name = os.environ.get(HUB_USER_ENV)
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER
            name = f"uid-{os.getuid()}"
    return label_value(name) or UNKNOWN_USER


def managed_labels() -> dict[str, str]:
    """The labels every object cellship creates starts from: managed-by and the user."""
    return dict(MANAGED_BY) | {USER_LABEL: current_user()}


def user_of(obj: Mapping[str, Any]) -> str | None:
    """Who made ``obj`` (its user label), None for objects made before cellship set it."""
    return (obj.get("metadata", {}).get("labels") or {}).get(USER_LABEL)


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
