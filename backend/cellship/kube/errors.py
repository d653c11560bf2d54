"""Typed Kubernetes errors (kr8s's habit): callers can tell 403 from 404 from 409 by
class, and every message says what to do. All are BackendErrors, so the rest of cellship
shows them like any other backend failure."""

from __future__ import annotations

from cellship.errors import BackendError

KUBECONFIG_HINT = ("Point cellship at a cluster with a kubeconfig: set KUBECONFIG=/path/to/config "
                   "or create ~/.kube/config (e.g. copy it from your cluster admin), and pick a "
                   "context with --context NAME if it has several.")


class KubernetesError(BackendError):
    """An API call failed; ``status`` is the HTTP status (None when no answer came)."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason  # 403 is not 404: callers tell them apart


class NoKubeconfig(KubernetesError):
    """Neither a kubeconfig nor an in-cluster service account was found."""


class KubernetesUnreachable(KubernetesError):
    """The API server did not answer (connection refused, DNS, TLS)."""


class KubernetesForbidden(KubernetesError):
    """403: RBAC does not allow this verb on this resource in this namespace."""

    def __init__(self, message: str, verb: str, resource: str, namespace: str | None) -> None:
        super().__init__(message, 403, "Forbidden")
        self.verb, self.resource, self.namespace = verb, resource, namespace  # what was refused


class KubernetesUnauthorized(KubernetesError):
    """401: the credentials of the kubeconfig were not accepted."""


class KubernetesNotFound(KubernetesError):
    """404: the object (or the whole API, e.g. the TFJob CRD) does not exist. ``verb``,
    ``resource`` and ``namespace`` say what was asked, where the client knows it."""

    def __init__(self, message: str, status: int | None = 404, reason: str | None = None, *,
                 verb: str | None = None, resource: str | None = None,
                 namespace: str | None = None) -> None:
        super().__init__(message, status, reason)
        self.verb, self.resource, self.namespace = verb, resource, namespace


class NamespaceNotFound(KubernetesNotFound):
    """404 on a create: the namespace itself does not exist (a typo, or not made yet)."""


class KubernetesConflict(KubernetesError):
    """409: an object of that name already exists (or changed under us)."""


class KubernetesInvalid(KubernetesError):
    """422 or a local check: a name or field Kubernetes rejects; the message shows the rule."""
