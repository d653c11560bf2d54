"""ApiException and connection failures -> typed errors that keep the status."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from cellship.errors import BackendError, CellshipError
from cellship.kube import client as kc
from cellship.kube.errors import (
    KubernetesConflict,
    KubernetesForbidden,
    KubernetesInvalid,
    KubernetesNotFound,
    KubernetesUnauthorized,
    KubernetesUnreachable,
    NoKubeconfig,
)


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
