"""In a pod without a kubeconfig: the ServiceAccount's token, CA and namespace, and a
token that the kubelet rotates keeps working (the official loader re-reads it)."""

from __future__ import annotations

import datetime
import types
from pathlib import Path

import pytest

from cellship.kube import client as kc
from cellship.kube.errors import NoKubeconfig


@pytest.fixture
def account(tmp_path: Path, monkeypatch) -> Path:
    """A directory laid out like /var/run/secrets/kubernetes.io/serviceaccount, and the
    environment the kubelet gives a pod; no kubeconfig anywhere."""
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("first-token")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnot checked here\n")
    (sa / "namespace").write_text("alice\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv(kc.SERVICE_ACCOUNT_ENV, str(sa))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    return sa


def authorization(client: kc.KubeClient) -> str:
    """The header the next request would carry (what the gate's param_serialize makes)."""
    _method, url, headers, _body, _post = client.api_client.param_serialize(
        method="GET", resource_path="/api/v1/namespaces/alice/pods", header_params={},
        auth_settings=["BearerToken"])
    assert url.startswith("https://10.0.0.1:443/")
    return headers["authorization"]


def test_a_pod_uses_its_service_account_and_its_own_namespace(account) -> None:
    client = kc.KubeClient()
    assert client.default_namespace == "alice"
    assert client.namespace() == "alice" and client.namespace("ml") == "ml"
    assert authorization(client) == "bearer first-token"
    assert client.api_client.configuration.ssl_ca_cert == str(account / "ca.crt")


def test_the_rotated_token_is_read_again_once_the_old_one_is_due(account, monkeypatch) -> None:
    client = kc.KubeClient()
    assert authorization(client) == "bearer first-token"
    (account / "token").write_text("rotated-token")
    assert authorization(client) == "bearer first-token"  # re-read at most once a minute

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return datetime.datetime.now(tz) + datetime.timedelta(minutes=2)

    from kubernetes.config import incluster_config
    monkeypatch.setattr(incluster_config, "datetime",
                        types.SimpleNamespace(datetime=Later, timedelta=datetime.timedelta))
    assert authorization(client) == "bearer rotated-token"


def test_connect_shares_one_in_cluster_client(account) -> None:
    first = kc.connect()
    assert isinstance(first, kc.KubeClient) and first.default_namespace == "alice"
    assert kc.connect() is first


def test_a_kubeconfig_wins_over_the_pods_account(account, tmp_path, monkeypatch) -> None:
    config = tmp_path / "config"
    config.write_text('{"apiVersion": "v1", "kind": "Config", "current-context": "a", '
                      '"clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}], '
                      '"users": [{"name": "u", "user": {"token": "t"}}], '
                      '"contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}]}')
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert not kc.in_cluster(None, str(config))
    assert kc.KubeClient().default_namespace == "default"


@pytest.mark.parametrize("missing, words", [("token", "token file does not exist"),
                                            ("ca.crt", "certification file does not exist")])
def test_a_pod_without_its_account_files_is_told_what_is_missing(account, missing,
                                                                 words) -> None:
    (account / missing).unlink()
    with pytest.raises(NoKubeconfig) as caught:
        kc.KubeClient()
    text = str(caught.value)
    assert words in text.lower() and str(account) in text
    assert "automountServiceAccountToken" in text and "KUBECONFIG" in text


def test_the_namespace_file_may_be_missing(account) -> None:
    (account / "namespace").unlink()
    assert kc.KubeClient().default_namespace == "default"
