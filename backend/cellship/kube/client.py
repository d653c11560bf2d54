"""The ONE place every Kubernetes API call goes through (kr8s's ``_api.py`` habit).

It loads a kubeconfig context or the in-cluster service account, speaks plain JSON-shaped
dicts (camelCase, as ``kubectl -o json``) in and out so manifests and diagnosis never see
the client's model classes, and turns every failure into a typed
:class:`~cellship.kube.errors.KubernetesError` that keeps the HTTP status and says what to do:
403 names the verb, resource and namespace; no kubeconfig says how to point cellship at a
cluster. Tests replace this class by an in-memory fake with the same methods.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from cellship.errors import MissingDependency
from cellship.kube.errors import (
    KUBECONFIG_HINT,
    KubernetesConflict,
    KubernetesError,
    KubernetesForbidden,
    KubernetesInvalid,
    KubernetesNotFound,
    KubernetesUnauthorized,
    KubernetesUnreachable,
    NoKubeconfig,
)

TFJOB_GROUP, TFJOB_VERSION, TFJOB_PLURAL = "kubeflow.org", "v1", "tfjobs"
# kind -> (resource name users see in RBAC messages, API group for messages)
RESOURCES = {"ConfigMap": "configmaps", "Service": "services", "Pod": "pods",
             "TFJob": "tfjobs.kubeflow.org", "Event": "events"}


def _require_client() -> Any:
    try:
        import kubernetes
    except ImportError as err:
        raise MissingDependency("The kubernetes backend needs the official Kubernetes client: "
                                "pip install 'cellship[kubernetes]'.") from err
    return kubernetes


def _body_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the raw text."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip()
    return str(data.get("message") or body).strip() if isinstance(data, dict) else str(body)


def translate(err: Exception, verb: str, resource: str, namespace: str | None,
              name: str | None = None) -> KubernetesError:
    """An ApiException (or a connection failure) -> the typed error to raise."""
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    detail = _body_message(getattr(err, "body", None)) or str(reason or err)
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    what = f"{resource}/{name}" if name else resource
    if status == 403:
        return KubernetesForbidden(
            f"Kubernetes refused: you may not {verb} {resource} {where} (403 Forbidden). "
            f"Ask a cluster admin for a Role allowing '{verb}' on '{resource}' {where}, or "
            f"use a namespace you may work in (--namespace). Server said: {detail}",
            verb=verb, resource=resource, namespace=namespace)
    if status == 401:
        return KubernetesUnauthorized(
            f"Kubernetes did not accept your credentials (401) to {verb} {what} {where}: "
            f"refresh your kubeconfig's token or certificate. {detail}", 401, reason)
    if status == 404:
        if resource.endswith("kubeflow.org") and not name:
            return KubernetesNotFound(
                "The Kubeflow TFJob CRD (kubeflow.org/v1) is not installed in this cluster: "
                "install the Kubeflow training operator, or use the default launcher "
                "(--launcher pods).", 404, reason)
        return KubernetesNotFound(f"{what} not found {where} (404): {detail}", 404, reason)
    if status == 409:
        return KubernetesConflict(
            f"Could not {verb} {what} {where}: it already exists or changed meanwhile (409). "
            f"{detail}", 409, reason)
    if status == 422:
        return KubernetesInvalid(f"Kubernetes rejected {what} {where} (422 Invalid): {detail}",
                                 422, reason)
    if status is None or status == 0:
        return KubernetesUnreachable(
            f"Could not reach the Kubernetes API server to {verb} {what}: {detail}. Check "
            "that the cluster is up and that your kubeconfig's server address is right "
            "(`kubectl cluster-info`).", None, reason)
    return KubernetesError(f"Kubernetes failed to {verb} {what} {where} ({status} {reason}): "
                           f"{detail}", status, reason)


class KubeClient:
    """A connection to one cluster (one kubeconfig context, or in-cluster)."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        kubernetes = _require_client()
        from kubernetes import client, config

        # Resolved here, not by the client at its import time, so KUBECONFIG set later counts.
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        self.api_client = self._load(config, client, context, kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.default_namespace = self._namespace(config, context, kubeconfig)
        self._kubernetes = kubernetes

    # -- configuration ---------------------------------------------------------------
    @staticmethod
    def _load(config: Any, client: Any, context: str | None, kubeconfig: str) -> Any:
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not (
            os.environ.get("KUBECONFIG") or context or os.path.exists(kubeconfig))
        try:
            if in_cluster:
                config.load_incluster_config()
                return client.ApiClient()
            return config.new_client_from_config(config_file=kubeconfig, context=context)
        except config.ConfigException as err:
            text = str(err)
            if context and "context" in text.lower():
                raise NoKubeconfig(f"The kubeconfig has no context {context!r} ({text}); list "
                                   "them with `kubectl config get-contexts`.") from err
            raise NoKubeconfig(f"No Kubernetes cluster configured ({text}). {KUBECONFIG_HINT}") from err
        except FileNotFoundError as err:
            raise NoKubeconfig(f"No kubeconfig found ({err}). {KUBECONFIG_HINT}") from err

    @staticmethod
    def _namespace(config: Any, context: str | None, kubeconfig: str | None) -> str:
        try:
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c["name"] == context), active)
            return (active or {}).get("context", {}).get("namespace") or "default"
        except (config.ConfigException, OSError, KeyError, TypeError):  # in-cluster: no kubeconfig
            path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
            try:
                with open(path) as handle:
                    return handle.read().strip() or "default"
            except OSError:
                return "default"

    # -- the one gate --------------------------------------------------------------------
    @contextmanager
    def _call(self, verb: str, kind: str, namespace: str | None,
              name: str | None = None) -> Iterator[None]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as err:
            raise translate(err, verb, RESOURCES.get(kind, kind), namespace, name) from err
        except (HTTPError, OSError) as err:
            raise translate(err, verb, RESOURCES.get(kind, kind), namespace, name) from err

    def _json(self, obj: Any) -> Any:
        return self.api_client.sanitize_for_serialization(obj)

    # -- operations (the fake in tests implements exactly these) ----------------------
    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = body["kind"]
        ns = body["metadata"]["namespace"]
        with self._call("create", kind, ns, body["metadata"]["name"]):
            if kind == "ConfigMap":
                return self._json(self.core.create_namespaced_config_map(ns, body))
            if kind == "Service":
                return self._json(self.core.create_namespaced_service(ns, body))
            if kind == "Pod":
                return self._json(self.core.create_namespaced_pod(ns, body))
            if kind == "TFJob":
                return self.custom.create_namespaced_custom_object(
                    TFJOB_GROUP, TFJOB_VERSION, ns, TFJOB_PLURAL, body)
        raise ValueError(f"cellship does not create {kind} objects")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self._call("get", kind, namespace, name):
            if kind == "ConfigMap":
                return self._json(self.core.read_namespaced_config_map(name, namespace))
            if kind == "Pod":
                return self._json(self.core.read_namespaced_pod(name, namespace))
            if kind == "TFJob":
                return self.custom.get_namespaced_custom_object(
                    TFJOB_GROUP, TFJOB_VERSION, namespace, TFJOB_PLURAL, name)
        raise ValueError(f"cellship does not read {kind} objects")

    def delete(self, kind: str, namespace: str, name: str,
               propagation: str = "Foreground") -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        with self._call("delete", kind, namespace, name):
            if kind == "ConfigMap":
                self.core.delete_namespaced_config_map(name, namespace, body=body)
            elif kind == "Pod":
                self.core.delete_namespaced_pod(name, namespace, body=body)
            elif kind == "Service":
                self.core.delete_namespaced_service(name, namespace, body=body)
            elif kind == "TFJob":
                self.custom.delete_namespaced_custom_object(
                    TFJOB_GROUP, TFJOB_VERSION, namespace, TFJOB_PLURAL, name, body=body)
            else:
                raise ValueError(f"cellship does not delete {kind} objects")

    def list(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` matching the selector in ``namespace``; ``None`` lists every
        namespace (what `cellship jobs --all-namespaces` needs; RBAC may refuse it: 403)."""
        sel = {"label_selector": label_selector}
        with self._call("list", kind, namespace):
            if kind == "TFJob":
                if namespace is None:
                    data = self.custom.list_cluster_custom_object(
                        TFJOB_GROUP, TFJOB_VERSION, TFJOB_PLURAL, **sel)
                else:
                    data = self.custom.list_namespaced_custom_object(
                        TFJOB_GROUP, TFJOB_VERSION, namespace, TFJOB_PLURAL, **sel)
                return list(data.get("items") or [])
            methods = {"Pod": ("list_namespaced_pod", "list_pod_for_all_namespaces"),
                       "Service": ("list_namespaced_service", "list_service_for_all_namespaces"),
                       "ConfigMap": ("list_namespaced_config_map",
                                     "list_config_map_for_all_namespaces")}
            if kind not in methods:
                raise ValueError(f"cellship does not list {kind} objects")
            namespaced, everywhere = methods[kind]
            if namespace is None:
                items = getattr(self.core, everywhere)(**sel).items
            else:
                items = getattr(self.core, namespaced)(namespace, **sel).items
        return [self._json(i) for i in items]

    def events(self, namespace: str, pod_name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=Pod,involvedObject.name={pod_name}"
        with self._call("list", "Event", namespace):
            items = self.core.list_namespaced_event(namespace, field_selector=selector).items
        return [self._json(i) for i in items]

    def pod_log(self, namespace: str, name: str, follow: bool = False,
                timestamps: bool = False) -> Iterator[str]:
        """The pod's log lines (container ``tensorflow``); with ``follow``, until it ends.
        ``timestamps`` prefixes each line with the kubelet's RFC 3339 time and a space
        (what a reconnecting follower uses to skip lines it already has)."""
        kwargs: dict[str, Any] = {"container": "tensorflow", "follow": follow,
                                  "timestamps": timestamps, "_preload_content": False}
        with self._call("get", "Pod", namespace, f"{name}/log"):
            response = self.core.read_namespaced_pod_log(name, namespace, **kwargs)
        pending = b""
        try:
            with self._call("get", "Pod", namespace, f"{name}/log"):
                for chunk in response.stream(4096):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
            if pending:
                yield pending.decode(errors="replace")
        finally:
            response.release_conn()

    def has_tfjob_crd(self) -> bool:
        """Whether kubeflow.org/v1 TFJobs can be created here."""
        try:
            with self._call("list", "TFJob", self.default_namespace):
                self.custom.list_namespaced_custom_object(
                    TFJOB_GROUP, TFJOB_VERSION, self.default_namespace, TFJOB_PLURAL, limit=1)
        except KubernetesNotFound:
            return False
        return True


def wait_gone(client: Any, kind: str, namespace: str, name: str, timeout: float,
              poll: float = 0.5) -> bool:
    """Poll until the object is gone (Foreground deletion finished); return whether it is."""
    end = time.monotonic() + timeout
    while True:
        try:
            client.get(kind, namespace, name)
        except KubernetesNotFound:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(poll)
