"""The API calls deploy needs on top of :class:`cellship.kube.client.KubeClient`.

The training backend's client speaks core/v1 and TFJobs; serving also needs apps/v1
Deployments, reading and replacing Services, and KServe InferenceServices. They go through
the same gate (``KubeClient._call``), so every failure is the same typed, worded error
(403 names the verb and resource, 404 is not 409). Tests use ``tests/unit/kube_fake.py``,
which implements these methods in memory.
"""

from __future__ import annotations

from typing import Any, Mapping

from cellship.deployment.manifests import KSERVE_GROUP, KSERVE_PLURAL, KSERVE_VERSION
from cellship.kube.client import KubeClient
from cellship.kube.errors import KubernetesForbidden, KubernetesNotFound

# kind -> the resource name users see in RBAC messages
RESOURCES = {"Deployment": "deployments.apps", "Service": "services",
             "InferenceService": "inferenceservices.serving.kserve.io"}


class DeployKube(KubeClient):
    """A KubeClient that can also create, read, replace, list and delete Deployments,
    Services and InferenceServices."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        super().__init__(context=context, kubeconfig=kubeconfig)
        from kubernetes import client

        self.apps = client.AppsV1Api(self.api_client)

    def _gate(self, verb: str, kind: str, namespace: str | None, name: str | None = None) -> Any:
        return self._call(verb, RESOURCES.get(kind, kind), namespace, name)

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        kind, ns, name = body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]
        if kind == "Deployment":
            with self._gate("create", kind, ns, name):
                return self._json(self.apps.create_namespaced_deployment(ns, body))
        if kind == "InferenceService":
            with self._gate("create", kind, ns, name):
                return self.custom.create_namespaced_custom_object(
                    KSERVE_GROUP, KSERVE_VERSION, ns, KSERVE_PLURAL, body)
        return super().create(body)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if kind not in RESOURCES:
            return super().get(kind, namespace, name)
        with self._gate("get", kind, namespace, name):
            if kind == "Deployment":
                return self._json(self.apps.read_namespaced_deployment(name, namespace))
            if kind == "Service":
                return self._json(self.core.read_namespaced_service(name, namespace))
            return self.custom.get_namespaced_custom_object(
                KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name)

    def replace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the whole object (``metadata.resourceVersion`` set: a concurrent change is a
        409). Why not PATCH: a replace also removes what the new spec no longer has (an
        env var, a limit), which a merge patch would keep."""
        kind, ns, name = body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]
        with self._gate("update", kind, ns, name):
            if kind == "Deployment":
                return self._json(self.apps.replace_namespaced_deployment(name, ns, body))
            if kind == "Service":
                return self._json(self.core.replace_namespaced_service(name, ns, body))
            if kind == "InferenceService":
                return self.custom.replace_namespaced_custom_object(
                    KSERVE_GROUP, KSERVE_VERSION, ns, KSERVE_PLURAL, name, body)
        raise ValueError(f"cellship does not replace {kind} objects")

    def delete(self, kind: str, namespace: str, name: str,
               propagation: str = "Foreground") -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if kind == "Deployment":
            with self._gate("delete", kind, namespace, name):
                self.apps.delete_namespaced_deployment(name, namespace, body=body)
            return
        if kind == "InferenceService":
            with self._gate("delete", kind, namespace, name):
                self.custom.delete_namespaced_custom_object(
                    KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name, body=body)
            return
        super().delete(kind, namespace, name, propagation)

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        if kind == "Deployment":
            with self._gate("list", kind, namespace):
                items = self.apps.list_namespaced_deployment(
                    namespace, label_selector=label_selector).items
            return [self._json(i) for i in items]
        if kind == "InferenceService":
            with self._gate("list", kind, namespace):
                found = self.custom.list_namespaced_custom_object(
                    KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL,
                    label_selector=label_selector)
            return list(found.get("items") or [])
        return super().list(kind, namespace, label_selector)

    def has_crd(self, group: str, version: str, plural: str, namespace: str) -> bool:
        """Whether ``group/version`` ``plural`` can be used here. A 403 counts as no: who
        may not even list them cannot deploy them, and a plain Deployment still works."""
        try:
            with self._gate("list", "InferenceService" if plural == KSERVE_PLURAL else plural,
                            namespace):
                self.custom.list_namespaced_custom_object(group, version, namespace, plural,
                                                          limit=1)
        except (KubernetesNotFound, KubernetesForbidden):
            return False
        return True
