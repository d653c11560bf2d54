"""cellship inside the cluster: two users, each a notebook pod's ServiceAccount in a
namespace of their own, bound to exactly the Role `cellship rbac` makes; no kubeconfig.

What a JupyterHub single-user pod has is laid out in a temporary directory (a real
ServiceAccount token from the TokenRequest API, the cluster's CA, the namespace file)
and named by $CELLSHIP_SERVICE_ACCOUNT_DIR, with KUBERNETES_SERVICE_HOST/PORT set as the
kubelet sets them. One test, one cluster session, tiny programs (no TensorFlow: RBAC is
what is under test, test_training.py trains), to stay within the tier's time budget.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

import cellship
from cellship.cli.main import main
from cellship.kube import client as kube_client
from cellship.kube import rbac
from cellship.kube.errors import KubernetesForbidden, KubernetesUnauthorized, NamespaceNotFound
from tests.k8s.support import options, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]

ACCOUNT = "notebook"
TINY = "import os\nprint('hello from', os.environ.get('HOSTNAME'), flush=True)\n"
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"


@pytest.fixture
def users(cluster) -> Iterator[dict[str, str]]:
    """alice and bob, a namespace each, set up by an admin with `cellship rbac --apply`.
    Namespaces are deleted without waiting (their pods' grace would cost the tier)."""
    tag = uuid.uuid4().hex[:6]
    made = {user: f"{user}-{tag}" for user in ("alice", "bob")}
    for namespace in made.values():
        cluster.kubectl("create", "namespace", namespace)
    for namespace in made.values():  # pods are refused until its ServiceAccount exists
        wait_for(lambda ns=namespace: cluster.kubectl("get", "serviceaccount", "default",
                                                      "-n", ns, check=False).returncode == 0,
                 30, f"the default ServiceAccount of {namespace}", interval=0.2)
    try:
        yield made
    finally:
        for namespace in made.values():
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def in_pod(monkeypatch, cluster, home: Path, user: str, namespace: str,
           token: str | None = None) -> Path:
    """This process now runs as ``user``'s notebook pod would: no kubeconfig, the pod's
    ServiceAccount files, the hub's user name."""
    directory = cluster.local.service_account_files(
        home / f"{user}-serviceaccount", namespace,
        token or cluster.local.service_account_token(namespace, ACCOUNT))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(home))  # no ~/.kube/config either
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", cluster.local.api_host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(cluster.local.api_port))
    monkeypatch.setenv(kube_client.SERVICE_ACCOUNT_ENV, str(directory))
    monkeypatch.setenv("JUPYTERHUB_USER", user)
    return directory


def pod_options(cluster: Any) -> dict[str, Any]:
    """No namespace, no context: the pod's own namespace is the default."""
    return {"image": cluster.image, "image_pull_policy": "Never"}


def objects(cluster: Any, namespace: str, job_id: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods,services,configmaps", "-n", namespace, "-l",
                          f"cellship.io/job-id={job_id}", "-o", "json").stdout
    return json.loads(out)["items"]


def can(cluster: Any, home: str, verb: str, resource: str, namespace: str) -> bool:
    """Whether the notebook ServiceAccount of namespace ``home`` may do that there."""
    who = f"system:serviceaccount:{home}:{ACCOUNT}"
    answer = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={who}",
                             check=False).stdout.strip()
    return answer == "yes"


def test_two_users_work_apart_with_exactly_the_role(cluster, users, monkeypatch, tmp_path,
                                                    capsys) -> None:
    alice_ns, bob_ns = users["alice"], users["bob"]
    # -- the admin: a namespace that does not exist is one sentence ---------------------------
    with pytest.raises(NamespaceNotFound) as missing:
        cellship.submit(TINY, name="nowhere", backend="kubernetes",
                        kubernetes=options(cluster, f"nope-{alice_ns}"))
    assert str(missing.value).startswith(
        f"Could not create configmaps in namespace nope-{alice_ns}: the namespace does not "
        "exist (404)")
    for namespace in (alice_ns, bob_ns):  # the ServiceAccount is made too (it was missing)
        assert main(["rbac", "-n", namespace, "--service-account", ACCOUNT, "--apply"]) == 0
    applied = capsys.readouterr().out
    assert f"serviceaccount/{ACCOUNT} created in namespace {bob_ns}" in applied, applied
    assert can(cluster, alice_ns, "list", "configmaps", alice_ns)
    assert not can(cluster, alice_ns, "list", "configmaps", bob_ns)  # only its own namespace

    # -- bob, in his notebook pod, starts a long job ------------------------------------------
    in_pod(monkeypatch, cluster, tmp_path, "bob", bob_ns)
    bobs = cellship.submit(SLEEPER, name="bobs", backend="kubernetes",
                           kubernetes=pod_options(cluster), timeout=200)

    # -- alice, in hers: a job runs, is followed, its files come home (exec), is listed ------
    in_pod(monkeypatch, cluster, tmp_path, "alice", alice_ns)
    assert kube_client.connect().namespace() == alice_ns  # the pod's own namespace
    lines: list[str] = []
    tiny = cellship.submit(TINY, name="tiny", backend="kubernetes",
                           kubernetes=pod_options(cluster), timeout=120)
    record = tiny.follow(emit=lambda line: lines.append(line.text))
    assert record.status == "succeeded", (record.error, lines)
    assert any(line.startswith("hello from tiny-") for line in lines), lines
    made = objects(cluster, alice_ns, tiny.id)
    assert made and {o["metadata"]["labels"]["cellship.io/user"] for o in made} == {"alice"}

    capsys.readouterr()
    assert main(["jobs", "--backend", "kubernetes"]) == 0
    listing = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert rows[tiny.id][2:4] == [alice_ns, "alice"], listing
    assert bobs.id not in listing  # bob's work is not alice's to see
    assert main(["jobs", "--backend", "kubernetes", "-A"]) == 1
    refused = capsys.readouterr().err
    assert "you may not list configmaps cluster-wide (403 Forbidden)" in refused, refused

    # -- alice cancelling bob's job: one sentence with the namespace and the permission -------
    assert main(["cancel", bobs.id]) == 1
    refused = capsys.readouterr().err
    assert f"you may not list pods in namespace {bob_ns} (403 Forbidden)" in refused, refused
    assert "Traceback" not in refused

    # -- alice's own running job: cancel works with exactly the Role ---------------------------
    sleeper = cellship.submit(SLEEPER, name="mine", backend="kubernetes",
                              kubernetes=pod_options(cluster), timeout=200)
    wait_for(lambda: sleeper.status == "running", 60, "alice's sleeper to run")
    assert sleeper.cancel().status == "cancelled"
    assert objects(cluster, alice_ns, sleeper.id) == []
    assert tiny.cancel().status == "succeeded"  # a finished job's objects go too
    assert objects(cluster, alice_ns, tiny.id) == []

    # -- bob without one verb: the step that needs it names it ---------------------------------
    in_pod(monkeypatch, cluster, tmp_path, "bob", bob_ns)
    less = rbac.role(bob_ns, without=[("delete", "configmaps")])
    cluster.kubectl("apply", "-f", "-", input=json.dumps(less))
    wait_for(lambda: not can(cluster, bob_ns, "delete", "configmaps", bob_ns), 10,
             "the smaller Role")
    assert bobs.status in ("pending", "running")
    with pytest.raises(KubernetesForbidden) as caught:
        bobs.cancel()
    assert (caught.value.verb, caught.value.resource, caught.value.namespace) == (
        "delete", "configmaps", bob_ns)
    assert str(caught.value).startswith(
        f"Kubernetes refused: you may not delete configmaps in namespace {bob_ns} "
        "(403 Forbidden).")


def test_a_revoked_token_is_replaced_by_the_rotated_file(cluster, users, monkeypatch,
                                                          tmp_path) -> None:
    """The kubelet rotates a pod's projected token in place; a long-running server must
    pick the new one up. Here the first token is revoked (bound to a Secret that is then
    deleted) and the file rewritten: the same client works again once it re-reads."""
    namespace = users["alice"]
    assert main(["rbac", "-n", namespace, "--service-account", ACCOUNT, "--apply"]) == 0
    cluster.kubectl("create", "secret", "generic", "holder", "-n", namespace)
    first = cluster.local.service_account_token(namespace, ACCOUNT, bound_secret="holder")
    directory = in_pod(monkeypatch, cluster, tmp_path, "alice", namespace, token=first)
    client = kube_client.connect()
    assert isinstance(client.list("ConfigMap", namespace), list)
    cluster.kubectl("delete", "secret", "holder", "-n", namespace)
    # The API server caches a token's success for 10 s.
    wait_for(lambda: _refused(client, namespace), 25, "the bound token to be revoked")
    (directory / "token").write_text(cluster.local.service_account_token(namespace, ACCOUNT))
    from kubernetes.config import incluster_config

    real = incluster_config.datetime

    class Later(real.datetime):  # type: ignore[misc, name-defined]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.datetime.now(tz) + real.timedelta(minutes=2)

    monkeypatch.setattr(incluster_config, "datetime",
                        type("clock", (), {"datetime": Later, "timedelta": real.timedelta}))
    assert kube_client.connect() is client  # the same, cached client
    assert isinstance(client.list("ConfigMap", namespace), list)


def _refused(client: Any, namespace: str) -> bool:
    try:
        client.list("ConfigMap", namespace)
    except KubernetesUnauthorized:
        return True
    return False
