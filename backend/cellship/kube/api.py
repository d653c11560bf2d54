"""The interface of the ONE Kubernetes client: what every feature may ask of a cluster.

:class:`cellship.kube.client.KubeClient` implements it against a real API server; the
unit tests' in-memory fake (tests/unit/kube_fake.py) implements the very same methods,
and tests/unit/kube/test_fake_conformance.py compares the two signature by signature, so
the fake cannot drift from the client and production code never adapts to either.

Everything speaks plain JSON-shaped dicts (camelCase, as ``kubectl get -o json``), and
every failure is a typed :class:`~cellship.kube.errors.KubernetesError` that keeps the HTTP
status. Kinds are named by their ``kind`` (``"Pod"``, ``"Job"``, ``"TFJob"``); what each one
is lives in :mod:`.kinds`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator, Mapping, Sequence

from cellship.kube.names import check_namespace
from cellship.kube.podspec import CONTAINER

Obj = dict[str, Any]
ObjList = list[Obj]  # an alias: inside the class, ``list`` is the method below

# Watch event types: the API server's, plus BOOKMARK for "the current objects are all
# listed now" (the initial-events-end bookmark of Kubernetes' watch-list, emulated).
ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def initial_events_end(resource_version: str) -> Obj:
    """The BOOKMARK event that ends a watch's initial ADDED events."""
    return {"type": BOOKMARK, "object": {"metadata": {
        "resourceVersion": resource_version, "annotations": {INITIAL_EVENTS_END: "true"}}}}


class KubeAPI(ABC):
    """A connection to one cluster. ``default_namespace``: the kubeconfig context's
    namespace (in a pod: the service account's), else ``default``."""

    default_namespace: str = "default"

    def namespace(self, namespace: str | None = None) -> str:
        """The namespace to use: the one given (checked), else the context's. The one
        place the fallback "option, kubeconfig context, default" is decided."""
        return check_namespace(namespace) if namespace else self.default_namespace

    @abstractmethod
    def create(self, body: Mapping[str, Any]) -> Obj:
        """POST ``body`` (kind and ``metadata.namespace`` say where); the object as stored."""

    @abstractmethod
    def get(self, kind: str, namespace: str, name: str) -> Obj:
        """One object; KubernetesNotFound when there is none."""

    @abstractmethod
    def list(self, kind: str, namespace: str | None, label_selector: str = "") -> ObjList:
        """The objects matching ``label_selector`` in ``namespace``; ``None`` lists every
        namespace (RBAC may refuse that: 403). Items carry ``kind`` and ``apiVersion``."""

    @abstractmethod
    def replace(self, body: Mapping[str, Any]) -> Obj:
        """PUT the whole object (with ``metadata.resourceVersion``: a change meanwhile is a
        409). Why not PATCH: a replace also drops what the new spec no longer has."""

    @abstractmethod
    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground",
               grace_seconds: int | None = None) -> None:
        """Delete with ``propagation`` (Foreground: the owner goes last, so waiting for it
        waits for its dependents). ``grace_seconds=0`` removes a pod at once."""

    @abstractmethod
    def events(self, kind: str, namespace: str, name: str) -> ObjList:
        """The Events whose ``involvedObject`` is this object (why a pod is stuck, why a Job
        made no pod)."""

    @abstractmethod
    def pod_log(self, namespace: str, name: str, follow: bool = False,
                timestamps: bool = False, container: str = CONTAINER) -> Iterator[str]:
        """The log lines of one container; with ``follow``, until it ends. ``timestamps``
        prefixes each with the kubelet's RFC 3339 time and a space (what a reconnecting
        follower uses to skip lines it already has)."""

    @abstractmethod
    def exec(self, namespace: str, name: str, command: Sequence[str],
             container: str = CONTAINER, timeout: float = 60.0) -> Iterator[bytes]:
        """Run ``command`` in a running container of pod ``name`` (``kubectl exec``): its
        stdout in chunks as they come, until it exits. A non-zero exit raises
        KubernetesError with the command's stderr; a stream that breaks, or is silent for
        ``timeout`` seconds, raises KubernetesUnreachable (the caller may retry)."""

    @abstractmethod
    def watch(self, kind: str, namespace: str | None, *, name: str | None = None,
              label_selector: str = "", timeout: float = 60.0) -> Iterator[Obj]:
        """Events ``{"type", "object"}`` about the matching objects: first an ADDED per
        object as it is now and one BOOKMARK, then every change (ADDED, MODIFIED, DELETED)
        for about ``timeout`` seconds. The stream may end sooner (the server closed it, or
        its history expired): then call again, which lists afresh."""

    @abstractmethod
    def has_crd(self, kind: str, namespace: str | None = None) -> bool:
        """Whether the API of ``kind`` (a custom resource) is served here (False on 404;
        other failures, 403 included, raise: the caller decides what they mean)."""
