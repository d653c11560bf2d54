"""ApiException and connection failures -> typed errors that keep the status."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from cellship.errors import BackendError, CellshipError
from cellship.kube import client as kc
from cellship.kube.errors import (
    KubernetesConflict,
    KubernetesError,
    KubernetesForbidden,
    KubernetesInvalid,
    KubernetesNotFound,
    KubernetesUnauthorized,
    KubernetesUnreachable,
    NamespaceNotFound,
    NoKubeconfig,
)
from tests.unit.kube_fake import FakeKube


def api_error(status: int, reason: str, message: str) -> ApiException:
    err = ApiException(status=status, reason=reason)
    err.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": message, "reason": reason, "code": status})
    return err


def test_forbidden_names_verb_resource_and_namespace() -> None:
    err = kc.translate(api_error(403, "Forbidden", 'pods is forbidden: User "alice" cannot '
                                 'create resource "pods" in API group "" in the namespace "ml"'),
                       "create", "pods", "ml", "job-worker-0")
    assert isinstance(err, KubernetesForbidden) and isinstance(err, BackendError)
    assert (err.status, err.verb, err.resource, err.namespace) == (403, "create", "pods", "ml")
    assert "may not create pods in namespace ml" in str(err)
    assert 'User "alice"' in str(err)


@pytest.mark.parametrize("status, cls, words", [
    (404, KubernetesNotFound, "not found"),
    (409, KubernetesConflict, "already exists"),
    (422, KubernetesInvalid, "a lowercase RFC 1123 label"),
    (401, KubernetesUnauthorized, "credentials"),
])
def test_statuses_map_to_classes(status, cls, words) -> None:
    err = kc.translate(api_error(status, "X", "metadata.name: Invalid value: \"A\": a lowercase "
                                 "RFC 1123 label must consist of ..."), "create", "configmaps",
                       "ml", "A")
    assert isinstance(err, cls) and err.status == status
    assert words in str(err)


def test_missing_tfjob_crd_says_what_to_do() -> None:
    err = kc.translate(api_error(404, "Not Found", "404 page not found"), "list",
                       "tfjobs.kubeflow.org", "ml")
    assert isinstance(err, KubernetesNotFound)
    assert "training operator" in str(err) and "--launcher pods" in str(err)


def test_connection_refused_is_one_sentence() -> None:
    cause = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] "
                                     "Connection refused")
    err = kc.translate(MaxRetryError(None, "/api/v1/pods", cause), "list", "pods", "ml")
    assert isinstance(err, KubernetesUnreachable) and err.status is None
    assert "Could not reach the Kubernetes API server" in str(err)


def test_no_kubeconfig_says_how_to_point_at_a_cluster(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(NoKubeconfig) as info:
        kc.KubeClient()
    assert isinstance(info.value, CellshipError)
    message = str(info.value)
    assert "KUBECONFIG" in message and "~/.kube/config" in message and "--context" in message


def test_unknown_context_is_named(tmp_path, monkeypatch) -> None:
    config = tmp_path / "config"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}]}))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert kc.KubeClient().default_namespace == "ml"  # loads; makes no request
    with pytest.raises(NoKubeconfig, match="no context 'b'.*get-contexts"):
        kc.KubeClient(context="b")


# -- the one gate: URLs from the kinds' data, JSON in and out, typed errors ----------------
class Stream:
    """The open HTTP response of a streamed request (a log, a watch)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def stream(self, amt=None, decode_content=None):
        yield from self.chunks

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


class Response:
    """What ``ApiClient.call_api`` returns (a RESTResponse)."""

    def __init__(self, status: int = 200, data: Any = None, chunks: list[bytes] = ()) -> None:
        self.status, self.reason, self.headers = status, "Reason", {}
        self._data = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.data = None
        self.response = Stream(list(chunks))

    def read(self) -> bytes:
        self.data = self._data
        return self._data


@pytest.fixture
def wired(tmp_path, monkeypatch):
    """A real KubeClient whose requests are recorded and answered by ``answers``."""
    config = tmp_path / "config"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}}]}))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    client = kc.KubeClient(kubeconfig=str(config))
    sent: list[tuple[str, str, Any]] = []
    answers: list[Response] = []

    def call_api(method, url, header_params=None, body=None, post_params=None,
                 _request_timeout=None):
        sent.append((method, url.replace("https://127.0.0.1:1", ""), body))
        return answers.pop(0) if answers else Response(200, {"items": []})

    monkeypatch.setattr(client.api_client, "call_api", call_api)
    return client, sent, answers


def test_paths_come_from_the_kinds_data(wired) -> None:
    client, sent, answers = wired
    sel = "app.kubernetes.io/managed-by=cellship"
    answers.append(Response(200, {"items": [{"metadata": {"name": "x"}}]}))
    assert client.list("ConfigMap", None, sel) == [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]
    client.list("Pod", "ml", sel)
    client.list("TFJob", None, sel)
    client.list("Job", "ml")
    client.get("Deployment", "ml", "digits")
    client.get("InferenceService", "ml", "digits")
    client.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ml"}})
    client.replace({"kind": "Service", "metadata": {"name": "s", "namespace": "ml"}})
    client.delete("Pod", "ml", "p", propagation="Background", grace_seconds=0)
    client.events("Job", "ml", "j")
    quoted = sel.replace("=", "%3D")  # as the generated methods quote it
    assert [(m, u) for m, u, _ in sent] == [
        ("GET", f"/api/v1/configmaps?labelSelector={quoted}"),
        ("GET", f"/api/v1/namespaces/ml/pods?labelSelector={quoted}"),
        ("GET", f"/apis/kubeflow.org/v1/tfjobs?labelSelector={quoted}"),
        ("GET", "/apis/batch/v1/namespaces/ml/jobs"),
        ("GET", "/apis/apps/v1/namespaces/ml/deployments/digits"),
        ("GET", "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/digits"),
        ("POST", "/apis/batch/v1/namespaces/ml/jobs"),
        ("PUT", "/api/v1/namespaces/ml/services/s"),
        ("DELETE", "/api/v1/namespaces/ml/pods/p"),
        ("GET", "/api/v1/namespaces/ml/events?fieldSelector=involvedObject.kind%3DJob%2C"
                "involvedObject.name%3Dj")]
    assert sent[8][2] == {"apiVersion": "v1", "kind": "DeleteOptions",
                          "propagationPolicy": "Background", "gracePeriodSeconds": 0}
    with pytest.raises(ValueError, match="does not handle CronJob"):
        client.get("CronJob", "ml", "x")


def test_failures_keep_their_status_and_name_the_rbac_resource(wired) -> None:
    client, _, answers = wired
    answers.append(Response(403, {"kind": "Status", "message": "deployments.apps is forbidden"}))
    with pytest.raises(KubernetesForbidden) as err:
        client.get("Deployment", "team", "digits")
    assert "may not get deployments.apps in namespace team" in str(err.value)
    assert err.value.status == 403 and "is forbidden" in str(err.value)
    answers.append(Response(409, {"message": "jobs.batch \"j\" already exists"}))
    with pytest.raises(KubernetesConflict):
        client.create({"kind": "Job", "metadata": {"name": "j", "namespace": "team"}})
    answers.append(Response(404, {"message": "the server could not find the requested resource"}))
    assert client.has_crd("InferenceService", "team") is False
    answers.append(Response(403, {"message": "no"}))
    with pytest.raises(KubernetesForbidden):  # the caller decides what a 403 means
        client.has_crd("InferenceService")
    assert client.has_crd("TFJob") is True
    assert client.namespace() == "team" and client.namespace("ml") == "ml"
    with pytest.raises(KubernetesInvalid):
        client.namespace("Not_Valid")


def test_watch_lists_then_follows_from_the_lists_version(wired) -> None:
    client, sent, answers = wired
    pod = {"metadata": {"name": "p", "namespace": "ml", "resourceVersion": "5"}}
    changed = {"kind": "Pod", "metadata": {"name": "p", "namespace": "ml", "resourceVersion": "6"}}
    answers.append(Response(200, {"metadata": {"resourceVersion": "7"}, "items": [pod]}))
    stream = [json.dumps({"type": "MODIFIED", "object": changed}).encode() + b"\n{\"type\": ",
              b"\"DELETED\", \"object\": " + json.dumps(changed).encode() + b"}\n",
              json.dumps({"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}).encode()
              + b"\n"]
    answers.append(Response(200, chunks=stream))
    events = list(client.watch("Pod", "ml", name="p", timeout=2.5))
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK", "MODIFIED", "DELETED"]
    assert events[0]["object"]["kind"] == "Pod"
    assert events[1]["object"]["metadata"]["resourceVersion"] == "7"
    url = sent[1][1]
    assert url.startswith("/api/v1/namespaces/ml/pods?fieldSelector=metadata.name%3Dp")
    assert "watch=true" in url and "resourceVersion=7" in url and "timeoutSeconds=3" in url

    answers.append(Response(200, {"metadata": {"resourceVersion": "8"}, "items": []}))
    answers.append(Response(200, chunks=[json.dumps({"type": "ERROR", "object": {
        "code": 403, "reason": "Forbidden", "message": "pods is forbidden"}}).encode() + b"\n"]))
    with pytest.raises(KubernetesForbidden) as err:
        list(client.watch("Pod", "ml"))
    assert err.value.verb == "watch"


def test_pod_log_lines_and_a_refused_log(wired) -> None:
    client, sent, answers = wired
    answers.append(Response(200, chunks=[b"one\ntw", b"o\nthree"]))
    assert list(client.pod_log("ml", "p", follow=True, timestamps=True)) == ["one", "two", "three"]
    assert sent[0][1] == "/api/v1/namespaces/ml/pods/p/log?container=tensorflow&follow=true&timestamps=true"
    answers.append(Response(400, {"message": "container \"tensorflow\" is waiting to start"}))
    with pytest.raises(KubernetesError, match="waiting to start"):
        list(client.pod_log("ml", "p"))
    answers.append(Response(403, {"message": "pods \"p\" is forbidden"}))
    with pytest.raises(KubernetesForbidden) as refused:  # RBAC's name: the subresource
        list(client.pod_log("ml", "p"))
    assert (refused.value.verb, refused.value.resource) == ("get", "pods/log")


def test_connect_shares_one_client_per_kubeconfig_and_context(tmp_path, monkeypatch) -> None:
    config = tmp_path / "config"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}},
                     {"name": "b", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}]}))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(config))
    first = kc.connect()
    assert kc.connect() is first and kc.connect("b") is not first
    assert kc.connect("b").default_namespace == "ml"
    os.utime(config, ns=(1, 1))  # edited since (a refreshed token): read again
    assert kc.connect() is not first


# -- refused, missing, no such namespace: one sentence each, naming verb, resource, namespace
def first_sentence(err: Exception) -> str:
    return str(err).split(". ")[0]


def test_each_refusal_leads_with_one_sentence_naming_what_was_asked() -> None:
    refused = kc.translate(api_error(403, "Forbidden", "x"), "delete", "configmaps", "bob",
                           "digits-ab12")
    assert first_sentence(refused) == ("Kubernetes refused: you may not delete configmaps in "
                                       "namespace bob (403 Forbidden)")
    assert "cellship rbac --namespace bob" in str(refused)
    missing = kc.translate(api_error(404, "NotFound", 'configmaps "digits-ab12" not found'),
                           "delete", "configmaps", "bob", "digits-ab12")
    assert type(missing) is KubernetesNotFound
    assert first_sentence(missing) == ("Could not delete configmaps digits-ab12 in namespace "
                                       "bob: it was not found (404)")
    assert (missing.verb, missing.resource, missing.namespace) == ("delete", "configmaps", "bob")


def test_a_namespace_that_does_not_exist_is_named_as_such() -> None:
    err = api_error(404, "NotFound", 'namespaces "nope" not found')
    err.body = json.dumps(json.loads(err.body) | {"details": {"name": "nope", "kind": "namespaces"}})
    found = kc.translate(err, "create", "configmaps", "nope", "digits-ab12")
    assert isinstance(found, NamespaceNotFound) and isinstance(found, KubernetesNotFound)
    assert first_sentence(found) == ("Could not create configmaps in namespace nope: the "
                                     "namespace does not exist (404); create it (`kubectl "
                                     "create namespace nope`) or pick an existing one with "
                                     "--namespace.")
    # An object's own 404 in an existing namespace is not that.
    plain = kc.translate(api_error(404, "NotFound", 'pods "nope" not found'), "get", "pods",
                         "ml", "nope")
    assert not isinstance(plain, NamespaceNotFound)


def test_the_fake_refuses_and_misses_in_the_real_clients_words() -> None:
    fake = FakeKube()
    fake.namespaces = {"alice"}
    with pytest.raises(NamespaceNotFound, match="namespace bob: the namespace does not exist"):
        fake.create({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "c", "namespace": "bob"}})
    fake.create({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "c", "namespace": "alice"}})
    fake.deny("delete", "configmaps")
    with pytest.raises(KubernetesForbidden) as caught:
        fake.delete("ConfigMap", "alice", "c")
    assert (caught.value.verb, caught.value.resource, caught.value.namespace) == (
        "delete", "configmaps", "alice")
    assert fake.get("ConfigMap", "alice", "c")  # still there: the delete was refused
    with pytest.raises(KubernetesNotFound, match="Could not get configmaps gone in namespace "
                                                 "alice: it was not found"):
        fake.get("ConfigMap", "alice", "gone")
    fake.deny("get", "pods/log")
    fake.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "alice"}})
    with pytest.raises(KubernetesForbidden, match="may not get pods/log in namespace alice"):
        list(fake.pod_log("alice", "p"))
