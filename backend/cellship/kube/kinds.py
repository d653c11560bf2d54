"""The kinds of Kubernetes object cellship touches, declared as data (kr8s's habit).

Each :class:`Kind` knows its API group and version, its plural (the path segment), whether
it lives in a namespace, and the resource name RBAC messages show (``jobs.batch``), so the
one client (:mod:`.client`) builds every URL from here and writes create, get, list,
replace, delete and watch once, instead of an ``if kind == ...`` branch per kind and verb.
Why not ``kubernetes.dynamic``: it asks the server's discovery API what exists before its
first call, a round trip per client that these fixed, known kinds do not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Kind:
    """One kind: ``Kind("Job", "batch", "v1", "jobs")``; ``group`` is "" for the core API."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """What a manifest's ``apiVersion`` says: ``v1``, ``batch/v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """The resource as RBAC and ``kubectl auth can-i`` name it: ``pods``, ``jobs.batch``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The URL path: the collection in ``namespace`` (every namespace when None), or one
        object (and its subresource, e.g. a pod's ``log``)."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None and self.namespaced:
            root += f"/namespaces/{quote(namespace, safe='')}"
        root += f"/{self.plural}"
        if name is not None:
            root += f"/{quote(name, safe='')}"
            if subresource:
                root += f"/{subresource}"
        return root


CONFIG_MAP = Kind("ConfigMap", "", "v1", "configmaps")
SERVICE = Kind("Service", "", "v1", "services")
POD = Kind("Pod", "", "v1", "pods")
SECRET = Kind("Secret", "", "v1", "secrets")  # read only: an object store's keys (--storage-secret)
EVENT = Kind("Event", "", "v1", "events")
JOB = Kind("Job", "batch", "v1", "jobs")
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments")
TFJOB = Kind("TFJob", "kubeflow.org", "v1", "tfjobs")
NODE = Kind("Node", "", "v1", "nodes", namespaced=False)
INFERENCE_SERVICE = Kind("InferenceService", "serving.kserve.io", "v1beta1", "inferenceservices")
# What `cellship rbac --apply` makes: cellship's own access, not a feature's objects.
SERVICE_ACCOUNT = Kind("ServiceAccount", "", "v1", "serviceaccounts")
ROLE = Kind("Role", "rbac.authorization.k8s.io", "v1", "roles")
ROLE_BINDING = Kind("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings")

KINDS: dict[str, Kind] = {k.kind: k for k in (CONFIG_MAP, SERVICE, POD, SECRET, EVENT, JOB, DEPLOYMENT,
                                              TFJOB, INFERENCE_SERVICE, NODE, SERVICE_ACCOUNT,
                                              ROLE, ROLE_BINDING)}
# Kinds that exist only where a CustomResourceDefinition installed them.
CUSTOM = frozenset({TFJOB.kind, INFERENCE_SERVICE.kind})


def of(kind: str) -> Kind:
    """The declared kind named ``kind``; a ValueError (a bug, not a user's mistake) for any
    other, since cellship creates and reads only these."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"cellship does not handle {kind} objects (known: "
                         f"{', '.join(sorted(KINDS))})") from None
