"""The ONE Kubernetes client: every API call of cellship goes through :meth:`KubeClient._send`.

It loads a kubeconfig context or the in-cluster service account (:mod:`.config`) and implements
:class:`~cellship.kube.api.KubeAPI` over the official client's ``ApiClient`` (its
authentication, TLS and connection pool), with URLs built from the kinds' data
(:mod:`.kinds`) and plain JSON dicts in and out, so manifests and diagnosis never see the
client's model classes. Why not the generated ``CoreV1Api``/``BatchV1Api``/... methods: one
method per kind and verb is the dispatch chain this replaces, and their type hints want
model objects where cellship has dicts.

Every failure becomes a typed :class:`~cellship.kube.errors.KubernetesError` that keeps the
HTTP status and says what to do (:func:`translate`): 403 names the verb, resource and
namespace; no kubeconfig says how to point cellship at a cluster.

:func:`connect` is the one factory, with the one cache of clients (one per kubeconfig file
and context, so the ``KUBECONFIG`` of the moment counts).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from cellship.errors import MissingDependency
from cellship.kube import execstream, kinds
from cellship.kube.api import KubeAPI, Obj, ObjList, initial_events_end
from cellship.kube.config import (  # noqa: F401  (SERVICE_ACCOUNT_*: where callers look)
    SERVICE_ACCOUNT_DIR,
    SERVICE_ACCOUNT_ENV,
    in_cluster,
    in_cluster_client,
    kubeconfig_client,
    kubeconfig_namespace,
    kubeconfig_path,
    read_namespace,
    service_account_dir,
)
from cellship.kube.errors import (
    KubernetesConflict,
    KubernetesError,
    KubernetesForbidden,
    KubernetesInvalid,
    KubernetesNotFound,
    KubernetesUnauthorized,
    KubernetesUnreachable,
    NamespaceNotFound,
)
from cellship.kube.podspec import CONTAINER

Query = Sequence[tuple[str, Any]]
WATCH_SLACK_SECONDS = 30  # a watch's socket waits this much longer than the server's timeout


def _require_client() -> None:
    """The official client is an optional dependency: say which extra brings it."""
    if importlib.util.find_spec("kubernetes") is None:
        raise MissingDependency("The kubernetes backend needs the official Kubernetes client: "
                                "pip install 'cellship[kubernetes]'.")


def _status_body(body: Any) -> dict[str, Any]:
    """A Kubernetes Status body as a dict (empty when it is none: a proxy's text, nothing)."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        data = json.loads(body) if body else None
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _body_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the raw text."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not body:
        return ""
    data = _status_body(body)
    if not data:
        return str(body).strip()
    return str(data.get("message") or body).strip()


def _missing_namespace(body: Any, namespace: str | None) -> bool:
    """Whether a 404 says the namespace itself is missing (``namespaces "ml" not found``,
    what a create in a namespace that does not exist answers), not the object."""
    details = _status_body(body).get("details") or {}
    return (namespace is not None and details.get("kind") == "namespaces"
            and details.get("name") == namespace)


def translate(err: Exception, verb: str, resource: str, namespace: str | None,
              name: str | None = None) -> KubernetesError:
    """An ApiException (or a connection failure) -> the typed error to raise. Refused,
    missing and a missing namespace each lead with one sentence naming the verb, the
    resource (as RBAC names it: ``pods/log``, ``jobs.batch``) and the namespace; what
    the server said follows it."""
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    body = getattr(err, "body", None)
    detail = _body_message(body) or str(reason or err)
    where = f"in namespace {namespace}" if namespace else "cluster-wide"
    what = f"{resource} {name}" if name else resource
    if status == 403:
        return KubernetesForbidden(
            f"Kubernetes refused: you may not {verb} {resource} {where} (403 Forbidden). "
            f"Ask a cluster admin for a Role allowing '{verb}' on '{resource}' {where} "
            f"(`cellship rbac --namespace {namespace or 'NS'}` prints the one cellship "
            f"needs), or use a namespace you may work in (--namespace). Server said: "
            f"{detail}", verb=verb, resource=resource, namespace=namespace)
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
        if _missing_namespace(body, namespace):
            return NamespaceNotFound(
                f"Could not {verb} {resource} in namespace {namespace}: the namespace does "
                f"not exist (404); create it (`kubectl create namespace {namespace}`) or "
                "pick an existing one with --namespace.", 404, reason,
                verb=verb, resource=resource, namespace=namespace)
        return KubernetesNotFound(
            f"Could not {verb} {what} {where}: it was not found (404). {detail}",
            404, reason, verb=verb, resource=resource, namespace=namespace)
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


class KubeClient(KubeAPI):
    """A connection to one cluster (one kubeconfig context, or in-cluster)."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None,
                 service_account: Path | None = None) -> None:
        _require_client()
        from kubernetes import client, config

        kubeconfig = kubeconfig_path(kubeconfig)
        if in_cluster(context, kubeconfig):
            account = service_account or service_account_dir()
            self.api_client = in_cluster_client(config, client, account)
            self.default_namespace = read_namespace(account)
        else:
            self.api_client = kubeconfig_client(config, context, kubeconfig)
            self.default_namespace = kubeconfig_namespace(config, context, kubeconfig)
        self._spdy_refused = False  # the server refused an exec's SPDY upgrade once

    # -- the one gate --------------------------------------------------------------------
    @contextmanager
    def _gate(self, verb: str, resource: str, namespace: str | None,
              name: str | None) -> Iterator[None]:
        """API and connection failures inside -> the typed, worded error."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except (ApiException, HTTPError, OSError) as err:
            raise translate(err, verb, resource, namespace, name) from err

    def _send(self, verb: str, kind: kinds.Kind, namespace: str | None, name: str | None,
              method: str, path: str, query: Query = (), body: Mapping[str, Any] | None = None,
              stream: bool = False, timeout: Any = None, resource: str | None = None) -> Any:
        """Every request: the decoded JSON answer, or (``stream``) the open HTTP response
        for the caller to read and close. ``name`` is only for messages; ``resource``
        is what RBAC calls it when that is a subresource (``pods/log``)."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        with self._gate(verb, resource or kind.resource, namespace, name):
            request = self.api_client.param_serialize(
                method=method, resource_path=path, query_params=list(query),
                header_params=headers, body=dict(body) if body is not None else None,
                auth_settings=["BearerToken"])
            response = self.api_client.call_api(*request, _request_timeout=timeout)
            if not 200 <= response.status <= 299:
                response.read()
                raise ApiException(http_resp=response)
            if stream:
                return response.response
            return json.loads(response.read() or b"null")

    # -- the interface -------------------------------------------------------------------
    def create(self, body: Mapping[str, Any]) -> Obj:
        kind, meta = kinds.of(body["kind"]), body["metadata"]
        ns = meta.get("namespace")
        return self._send("create", kind, ns, meta["name"], "POST", kind.path(ns), body=body)

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        k = kinds.of(kind)
        return self._send("get", k, namespace, name, "GET", k.path(namespace, name))

    def list(self, kind: str, namespace: str | None, label_selector: str = "") -> ObjList:
        k = kinds.of(kind)
        query = [("labelSelector", label_selector)] if label_selector else []
        found = self._send("list", k, namespace, None, "GET", k.path(namespace), query)
        return _tagged(k, found.get("items") or [])

    def replace(self, body: Mapping[str, Any]) -> Obj:
        kind, meta = kinds.of(body["kind"]), body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        return self._send("update", kind, ns, name, "PUT", kind.path(ns, name), body=body)

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground",
               grace_seconds: int | None = None) -> None:
        k = kinds.of(kind)
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                   "propagationPolicy": propagation}
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        self._send("delete", k, namespace, name, "DELETE", k.path(namespace, name), body=options)

    def events(self, kind: str, namespace: str, name: str) -> ObjList:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        found = self._send("list", kinds.EVENT, namespace, None, "GET",
                           kinds.EVENT.path(namespace), [("fieldSelector", selector)])
        return list(found.get("items") or [])

    def pod_log(self, namespace: str, name: str, follow: bool = False,
                timestamps: bool = False, container: str = CONTAINER) -> Iterator[str]:
        query = [("container", container), ("follow", follow), ("timestamps", timestamps)]
        resource = f"{kinds.POD.resource}/log"
        response = self._send("get", kinds.POD, namespace, name, "GET",
                              kinds.POD.path(namespace, name, "log"), query, stream=True,
                              resource=resource)
        pending = b""
        try:
            with self._gate("get", resource, namespace, name):
                for chunk in response.stream(4096):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
            if pending:
                yield pending.decode(errors="replace")
        finally:
            response.release_conn()

    def exec(self, namespace: str, name: str, command: Sequence[str],
             container: str = CONTAINER, timeout: float = 60.0) -> Iterator[bytes]:
        """Over SPDY/3.1, as ``kubectl exec`` does, or the websocket channel protocol where
        the server refuses SPDY (or a proxy is configured); either way channel 1 stdout,
        2 stderr, 3 the final Status, read by :mod:`.execstream` (why both, and why not
        websocket-client's or ``kubernetes.stream.stream``'s reader: see there; the
        latter also swaps the shared ApiClient's ``call_api`` while it runs)."""
        resource = f"{kinds.POD.resource}/exec"
        query = [("container", container), ("stdout", "true"), ("stderr", "true"),
                 ("stdin", "false"), ("tty", "false")] + [("command", c) for c in command]
        with self._gate("create", resource, namespace, name):
            _method, url, headers, _body, _post = self.api_client.param_serialize(
                method="GET", resource_path=kinds.POD.path(namespace, name, "exec"),
                header_params={}, auth_settings=["BearerToken"])
            frames, close = self._open_exec(url, query, headers, timeout)
        status = bytearray()
        errors = bytearray()
        try:
            try:
                for channel, payload in frames:
                    if channel == execstream.STDOUT:
                        yield payload
                    elif channel == execstream.STDERR:
                        errors += payload
                    elif channel == execstream.STATUS:
                        status += payload
            except TimeoutError as err:
                raise KubernetesUnreachable(
                    f"The exec stream of pod {name} in namespace {namespace} was silent "
                    f"for {timeout:g}s.", None) from err
            except OSError as err:
                raise KubernetesUnreachable(
                    f"The exec stream of pod {name} in namespace {namespace} broke: "
                    f"{err}.", None) from err
        finally:
            close(frames.closed)
        _exec_outcome(bytes(status), bytes(errors), command, name, namespace)

    def _open_exec(self, url: str, query: Query, headers: Mapping[str, str],
                   timeout: float) -> tuple[execstream.Drain, Callable[[bool], None]]:
        """The exec's frames and how to close them (told whether the server ended the
        stream), over SPDY unless this server refused it before; failures raise for the
        gate (a refusal of both: as an ApiException with the server's status)."""
        configuration = self.api_client.configuration
        refused = False
        if not self._spdy_refused and not (configuration.proxy or configuration.proxy_headers):
            try:
                spdy = execstream.open_spdy(configuration, url, query, headers, timeout)
            except execstream.Refused as err:
                if err.status in (401, 404) or _rbac_refusal(err):
                    raise _refusal(err) from err
                refused = True  # e.g. 400: no SPDY here, or a bad request: the websocket says
            else:
                return spdy, lambda _ended: spdy.sock.close()
        from kubernetes.stream import ws_client
        from websocket import WebSocketException

        try:
            sock = ws_client.create_websocket(configuration,
                                              ws_client.get_websocket_url(url, query), headers)
        except WebSocketException as err:
            raise _websocket_error(err) from err
        if refused:  # the websocket took what SPDY was refused: the websocket from now on
            self._spdy_refused = True
        frames = execstream.Frames(sock.sock, timeout, pong=sock.pong)

        def close(ended: bool) -> None:
            if ended:
                try:
                    sock.send_close()  # the answer to the server's close frame
                except (WebSocketException, OSError):
                    pass
            sock.shutdown()

        return frames, close

    def watch(self, kind: str, namespace: str | None, *, name: str | None = None,
              label_selector: str = "", timeout: float = 60.0) -> Iterator[Obj]:
        """LIST, then WATCH from the list's resourceVersion: no change between the two is
        missed. Written here rather than with ``kubernetes.watch.Watch`` because that one
        wants a generated list function and retries on its own, while this gate must keep
        its typed errors; its line splitter is reused."""
        from kubernetes.watch.watch import iter_resp_lines
        from urllib3.exceptions import HTTPError

        k = kinds.of(kind)
        query: list[tuple[str, Any]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if name is not None:
            query.append(("fieldSelector", f"metadata.name={name}"))
        found = self._send("list", k, namespace, None, "GET", k.path(namespace), query)
        for item in _tagged(k, found.get("items") or []):
            yield {"type": "ADDED", "object": item}
        version = str((found.get("metadata") or {}).get("resourceVersion") or "")
        yield initial_events_end(version)
        if timeout <= 0:
            return
        seconds = max(1, math.ceil(timeout))
        query += [("watch", True), ("resourceVersion", version), ("timeoutSeconds", seconds)]
        response = self._send("watch", k, namespace, None, "GET", k.path(namespace), query,
                              stream=True, timeout=(30, seconds + WATCH_SLACK_SECONDS))
        try:
            for line in iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:  # history expired: the caller lists again
                        return
                    raise _status_error(status, "watch", k.resource, namespace)
                yield event
        except (HTTPError, OSError):
            return  # the stream broke (server restart, timeout): the caller lists again
        finally:
            response.close()
            response.release_conn()

    def has_crd(self, kind: str, namespace: str | None = None) -> bool:
        k = kinds.of(kind)
        ns = namespace or self.default_namespace
        try:
            self._send("list", k, ns, None, "GET", k.path(ns), [("limit", 1)])
        except KubernetesNotFound:
            return False
        return True


def _tagged(kind: kinds.Kind, items: ObjList) -> ObjList:
    """List items as the API sends them lack ``kind`` and ``apiVersion``; put them back so a
    listed object reads like a fetched one (an owner for :func:`owner_reference`)."""
    return [{"apiVersion": kind.api_version, "kind": kind.kind} | item for item in items]


def _websocket_error(err: Exception) -> Exception:
    """A refused exec handshake -> the error the gate turns into a typed one."""
    from kubernetes.client.exceptions import ApiException

    status = getattr(err, "status_code", None)
    if status is None:
        return OSError(str(err))
    failed = ApiException(status=status, reason=str(err))
    failed.body = getattr(err, "resp_body", None)
    return failed


def _rbac_refusal(err: "execstream.Refused") -> bool:
    """A 403 of RBAC (``pods "x" is forbidden: User ... cannot create resource
    "pods/exec"``), not one of a proxy or kubelet that will not upgrade to SPDY."""
    return err.status == 403 and b"cannot create resource" in err.body


def _refusal(err: "execstream.Refused") -> Exception:
    """A refused SPDY upgrade -> the error the gate turns into a typed one."""
    from kubernetes.client.exceptions import ApiException

    failed = ApiException(status=err.status, reason=err.reason)
    failed.body = err.body.decode(errors="replace")
    return failed


def _exec_outcome(status: bytes, stderr: bytes, command: Sequence[str], name: str,
                  namespace: str) -> None:
    """Raise unless the exec's final Status says Success. No Status at all means the
    stream ended before the command did."""
    text = stderr.decode(errors="replace").strip()
    if not status:
        raise KubernetesUnreachable(f"The exec stream of pod {name} in namespace {namespace} "
                                    f"ended before its command did. {text}".strip(), None)
    try:
        data = json.loads(status)
    except ValueError:
        data = {}
    if data.get("status") == "Success":
        return
    message = data.get("message") or status.decode(errors="replace")
    raise KubernetesError(f"`{' '.join(command[:3])} ...` in pod {name} (namespace "
                          f"{namespace}) failed: {message}" + (f"; it said: {text[-800:]}"
                                                               if text else ""), None)


def _status_error(status: Mapping[str, Any], verb: str, resource: str,
                  namespace: str | None) -> KubernetesError:
    """A Status object inside a watch stream (an ERROR event) -> the typed error."""
    from kubernetes.client.exceptions import ApiException

    err = ApiException(status=status.get("code"), reason=status.get("reason"))
    err.body = json.dumps(dict(status))
    return translate(err, verb, resource, namespace)


# -- the one factory, the one cache --------------------------------------------------------
_clients: dict[tuple[str | None, str, int | None, str | None], KubeClient] = {}
_clients_lock = threading.Lock()


def connect(context: str | None = None) -> KubeAPI:
    """The client for ``context`` (None: the current one) of the kubeconfig in effect now,
    made once and shared by every feature. A kubeconfig edited since (a new token) is read
    again: its modification time is part of the key. In a pod (:func:`in_cluster`) the
    key is the ServiceAccount's directory and API address: one client, whose Configuration
    re-reads the rotated token itself."""
    path = kubeconfig_path()
    try:
        stamp: int | None = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None
    pod = None
    if in_cluster(context, path):
        pod = (f"{service_account_dir()}@{os.environ.get('KUBERNETES_SERVICE_HOST')}:"
               f"{os.environ.get('KUBERNETES_SERVICE_PORT')}")
    key = (context, path, stamp, pod)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = KubeClient(context=context, kubeconfig=path)
        return client
