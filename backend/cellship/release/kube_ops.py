"""The few cluster operations a release repeats: scaling and relabelling a Deployment
(read, change, PUT; a 409 reads again), retiring one (scaled to 0, drained, deleted), the
model's Service, ready pods, and the images of the versions once promoted (from the
release records). Every call goes through the one client (:class:`cellship.kube.api.KubeAPI`).
"""

from __future__ import annotations

from typing import Any, Callable

from cellship.deployment.rollout import is_ready, live_pods, wait_pods_gone
from cellship.errors import ReleaseError
from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesConflict, KubernetesNotFound
from cellship.kube.waiting import wait_gone
from cellship.release import kserve
from cellship.release import kube_manifests as km
from cellship.store import Store

DEPLOYMENT, SERVICE, ISVC = "Deployment", "Service", "InferenceService"


def ready_pods(client: KubeAPI, namespace: str, name: str) -> list[dict[str, Any]]:
    """The ready, not stopping, pods of Deployment ``name``."""
    return [p for p in live_pods(client, namespace, f"{km.mf.LABEL_DEPLOYMENT}={name}")
            if is_ready(p)]


def ensure_service(client: KubeAPI, namespace: str, model: str) -> None:
    """The model's Service (made once; one cellship did not make is left alone)."""
    try:
        found = client.get(SERVICE, namespace, model)
    except KubernetesNotFound:
        client.create(km.service(model, namespace))
        return
    if not km.mf.is_managed(found):
        raise ReleaseError(f"A Service named {model} exists in namespace {namespace} and "
                           "cellship did not make it; the release leaves it alone and cannot "
                           "route the model's traffic.", "promote")


def edit(client: KubeAPI, namespace: str, name: str,
         change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """PUT ``change`` of Deployment ``name`` as read; a conflict reads it again."""
    for attempt in range(5):
        current = client.get(DEPLOYMENT, namespace, name)
        try:
            client.replace(change(current))
            return
        except KubernetesConflict:
            if attempt == 4:
                raise


def retire(client: KubeAPI, namespace: str, name: str, timeout: float) -> None:
    """Scale to 0, wait until its pods are gone (drained by their preStop pause while the
    Service drops them), delete the Deployment."""
    try:
        edit(client, namespace, name, lambda d: km.with_replicas(d, 0))
    except KubernetesNotFound:
        return
    wait_pods_gone(client, namespace, f"{km.mf.LABEL_DEPLOYMENT}={name}", timeout)
    delete(client, namespace, DEPLOYMENT, name)
    wait_gone(client, DEPLOYMENT, namespace, name, timeout)  # foreground: its ReplicaSet first


def delete(client: KubeAPI, namespace: str, kind: str, name: str) -> None:
    try:
        client.delete(kind, namespace, name, propagation="Foreground")
    except KubernetesNotFound:
        pass


def kserve_revert(client: KubeAPI, namespace: str, model: str) -> None:
    """The InferenceService's previous predictor back (deleted: it had none)."""
    try:
        existing = client.get(ISVC, namespace, model)
    except KubernetesNotFound:
        return
    body = kserve.reverted_body(existing)
    if body is None:
        delete(client, namespace, ISVC, model)
    else:
        client.replace(body)


def promoted_images(store: Store, model: str, target: str) -> dict[int, str]:
    """Every version of ``model`` ever promoted to ``target``, with its recorded image."""
    images: dict[int, str] = {}
    for r in store.list_releases(model):
        if (r.target == target and r.kind == "release" and r.outcome == "promoted"
                and r.version is not None and r.details.get("image")):
            images[r.version] = r.details["image"]
    return images
