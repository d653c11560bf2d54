"""KubeClient plus batch/v1 Jobs and the events of any object (for batch runs).

A subclass rather than more branches in :mod:`.client`, so the training backend's client is
untouched; every call still goes through ``KubeClient._call``, the one gate that turns API
failures into typed errors (403 names ``jobs.batch``). Fold it into KubeClient when
convenient: the methods keep KubeClient's shapes (plain JSON dicts in and out), and the
fake in tests/unit/kube_fake.py implements the same.
"""

from __future__ import annotations

from typing import Any, Mapping

from cellship.kube.client import KubeClient

JOBS = "jobs.batch"  # the resource name RBAC messages show


class BatchKubeClient(KubeClient):
    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        super().__init__(context=context, kubeconfig=kubeconfig)
        from kubernetes import client

        self.batch = client.BatchV1Api(self.api_client)

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if body["kind"] != "Job":
            return super().create(body)
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        with self._call("create", JOBS, ns, name):
            return self._json(self.batch.create_namespaced_job(ns, body))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if kind != "Job":
            return super().get(kind, namespace, name)
        with self._call("get", JOBS, namespace, name):
            return self._json(self.batch.read_namespaced_job(name, namespace))

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground",
               grace_seconds: int | None = None) -> None:
        """``grace_seconds=0`` removes a pod at once (for pods whose container never ran:
        the kubelet can take tens of seconds to finish one stuck pulling its image)."""
        if kind not in ("Job", "Pod") or (kind == "Pod" and grace_seconds is None):
            return super().delete(kind, namespace, name, propagation)
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                "propagationPolicy": propagation}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        if kind == "Pod":
            with self._call("delete", "Pod", namespace, name):
                self.core.delete_namespaced_pod(name, namespace, body=body)
            return None
        with self._call("delete", JOBS, namespace, name):
            self.batch.delete_namespaced_job(name, namespace, body=body)
        return None

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        if kind != "Job":
            return super().list(kind, namespace, label_selector)
        with self._call("list", JOBS, namespace):
            items = self.batch.list_namespaced_job(namespace, label_selector=label_selector).items
        return [self._json(i) for i in items]

    def object_events(self, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about any object (a Job's FailedCreate explains a pod that never came)."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        with self._call("list", "Event", namespace):
            items = self.core.list_namespaced_event(namespace, field_selector=selector).items
        return [self._json(i) for i in items]
