"""`--launcher tfjob` against a real apiserver that has the Kubeflow TFJob CRD.

There is no training operator here (nothing is downloaded), so the TFJob's pods never
start: what is checked is the part cellship owns. The CRD (tests/cluster/tfjob_crd.py)
is the operator's kubeflow.org/v1 structural schema with the pod template generated from
this apiserver's own core/v1 types, so the apiserver both *validates* the TFJob (a wrong
value is refused) and *prunes* it (a field the schema does not know is silently
dropped). The TFJob cellship sends must come back exactly as sent.

The CRD is installed for this module and deleted at its end, so the other tests of the
session see a cluster without it.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Iterator

import pytest

import cellship
from cellship.errors import CellshipError
from cellship.kube.client import KubeClient
from cellship.kube.options import KubernetesOptions
from cellship.train.kubernetes import manifests
from cellship.train.kubernetes.backend import KubernetesBackend
from cellship.train.kubernetes.manifests import JobIdentity
from cellship.train.spec import JobSpec
from tests.cluster import tfjob_crd
from tests.k8s import support

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]


def options(cluster: Any, namespace: str, **more: Any) -> dict[str, Any]:
    return support.options(cluster, namespace, launcher="tfjob") | more


def objects(cluster: Any, namespace: str, selector: str,
            kinds: str = "tfjobs.kubeflow.org,configmaps,services,pods") -> list[str]:
    out = cluster.kubectl("get", kinds, "-n", namespace, "-l", selector, "-o", "json").stdout
    return [f"{o['kind']}/{o['metadata']['name']}" for o in json.loads(out)["items"]]


def plain(obj: Any) -> Any:
    """As JSON sees it (tuples are lists, keys are strings)."""
    return json.loads(json.dumps(obj))


def diff(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Where ``stored`` differs from ``sent``: the paths pruning (or anything) changed."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        out = [f"{path}.{k}: sent, not stored" for k in sent if k not in stored]
        out += [f"{path}.{k}: stored, not sent" for k in stored if k not in sent]
        for key in sent.keys() & stored.keys():
            out += diff(sent[key], stored[key], f"{path}.{key}")
        return out
    if isinstance(sent, list) and isinstance(stored, list) and len(sent) == len(stored):
        return [d for i, (a, b) in enumerate(zip(sent, stored)) for d in diff(a, b, f"{path}[{i}]")]
    return [] if sent == stored else [f"{path}: sent {sent!r}, stored {stored!r}"]


@pytest.fixture(scope="module")
def crd_body(cluster) -> Iterator[dict[str, Any]]:
    """The CRD built from this apiserver's OpenAPI; installed, and removed at the end."""
    openapi = tfjob_crd.fetch_openapi(cluster.kubectl)
    _, cut_offs = tfjob_crd.tfjob_schema(openapi)
    assert cut_offs == [], cut_offs  # the whole pod template is known, nothing waved through
    body = tfjob_crd.tfjob_crd(openapi)
    tfjob_crd.uninstall(cluster.kubectl)
    started = time.monotonic()
    tfjob_crd.install(cluster.kubectl, body)
    print(f"TFJob CRD ({len(json.dumps(body)) // 1024} KiB) established in "
          f"{time.monotonic() - started:.1f}s")
    try:
        yield body
    finally:
        tfjob_crd.uninstall(cluster.kubectl)


@pytest.fixture
def with_crd(cluster, crd_body) -> None:
    """The CRD is there (again, should a test without it have run first)."""
    if not tfjob_crd.is_installed(cluster.kubectl):
        tfjob_crd.install(cluster.kubectl, crd_body)


@pytest.fixture
def without_crd(cluster) -> None:
    tfjob_crd.uninstall(cluster.kubectl)


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, Any]]:
    """Every body cellship's KubeClient creates, as it was sent."""
    bodies: list[dict[str, Any]] = []
    create = KubeClient.create

    def recording(self, body):
        bodies.append(copy.deepcopy(plain(body)))
        return create(self, body)

    monkeypatch.setattr(KubeClient, "create", recording)
    return bodies


def test_the_crd_is_structural_and_served(cluster, with_crd) -> None:
    crd = json.loads(cluster.kubectl("get", "crd", tfjob_crd.CRD_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True", conditions
    assert conditions.get("NonStructuralSchema", "False") == "False", crd["status"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_a_tfjob_launch_is_accepted_and_nothing_is_pruned(cluster, namespace, with_crd,
                                                          sent) -> None:
    job = cellship.submit(
        "print('hello from a TFJob', lr)\n", workers=2, ps=1, name="tfjob-digits",
        backend="kubernetes", max_restarts=2, timeout=900, env={"MY_SETTING": "on"},
        ship=["lr"], namespace={"lr": 0.1},
        kubernetes=options(cluster, namespace, cpu="250m", memory="256Mi",
                           memory_limit="1Gi", cpu_limit="1",
                           node_selector={"kubernetes.io/os": "linux"},
                           tolerations=[{"key": "dedicated", "operator": "Equal",
                                         "value": "ml", "effect": "NoSchedule"}],
                           volumes=[{"claim": "data", "mount_path": "/data",
                                     "read_only": True, "sub_path": "mnist"}]))
    tfjobs = [b for b in sent if b["kind"] == "TFJob"]
    assert len(tfjobs) == 1 and [b["kind"] for b in sent] == ["TFJob", "ConfigMap"], sent
    body = tfjobs[0]
    name = body["metadata"]["name"]
    stored = json.loads(cluster.kubectl("get", "tfjobs.kubeflow.org", name, "-n", namespace,
                                        "-o", "json").stdout)
    # Every field cellship sets is one the CRD's schema knows: none was pruned (and the
    # apiserver defaulted none in).
    assert diff(body["spec"], stored["spec"], "spec") == []
    assert stored["spec"] == body["spec"]
    assert stored["metadata"]["labels"] == body["metadata"]["labels"]
    assert set(stored["spec"]["tfReplicaSpecs"]) == {"Chief", "Worker", "PS"}
    # The job object holding the program belongs to the TFJob: deleting it collects it.
    config = json.loads(cluster.kubectl("get", "configmap", name, "-n", namespace,
                                        "-o", "json").stdout)
    assert config["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": name,
        "uid": stored["metadata"]["uid"], "blockOwnerDeletion": True}]
    assert manifests.SHIPPED_KEY in config.get("binaryData", {})
    # cellship finds it again, from its labels, as a TFJob job.
    found = [j for j in KubernetesBackend().discover(namespace, context=cluster.context)
             if j["id"] == job.id]
    assert [(j["launcher"], j["object"]) for j in found] == [("tfjob", name)], found


def valid_tfjob(cluster: Any, namespace: str) -> dict[str, Any]:
    body = manifests.tfjob(JobIdentity("ab12cd34", "probe", namespace), JobSpec(workers=2),
                           KubernetesOptions(image=cluster.image, launcher="tfjob",
                                             image_pull_policy="Never"))
    return plain(body)


def server_dry_run(cluster: Any, body: dict[str, Any]):
    """Create on the server, not stored, with kubectl's own client-side schema check off:
    whatever is refused, the apiserver refused."""
    return cluster.kubectl("create", "--dry-run=server", "--validate=false", "-o", "json",
                           "-f", "-", input=json.dumps(body), check=False)


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


WORKER = ("spec", "tfReplicaSpecs", "Worker")
CONTAINER = (*WORKER, "template", "spec", "containers", 0)


@pytest.mark.parametrize("path, value, words", [
    ((*WORKER, "restartPolicy"), "Sometimes", ["restartPolicy", "Unsupported value"]),
    ((*WORKER, "replicas"), "two", ["replicas", "integer"]),
    (("spec", "runPolicy", "cleanPodPolicy"), "Sometimes", ["cleanPodPolicy"]),
    (("spec", "runPolicy", "backoffLimit"), "3", ["backoffLimit", "integer"]),
    # from the pod template generated out of the apiserver's own core/v1 types
    ((*CONTAINER, "ports", 0, "containerPort"), "2222", ["containerPort", "integer"]),
    ((*CONTAINER, "env"), {"NAME": "value"}, ["env", "array"]),
    ((*WORKER, "template", "spec", "enableServiceLinks"), "no", ["enableServiceLinks", "boolean"]),
], ids=["restartPolicy", "replicas", "cleanPodPolicy", "backoffLimit", "containerPort", "env",
        "enableServiceLinks"])
def test_the_crd_refuses_an_invalid_tfjob(cluster, namespace, with_crd, path, value,
                                          words) -> None:
    good = valid_tfjob(cluster, namespace)
    accepted = server_dry_run(cluster, good)
    assert accepted.returncode == 0, accepted.stderr  # the control: only the change differs
    bad = copy.deepcopy(good)
    _set(bad, path, value)
    refused = server_dry_run(cluster, bad)
    assert refused.returncode != 0, f"accepted {path}={value!r}"
    assert "invalid" in refused.stderr.lower(), refused.stderr
    for word in words:
        assert word in refused.stderr, refused.stderr


def test_an_unknown_field_is_pruned_which_is_what_the_launch_test_would_catch(
        cluster, namespace, with_crd) -> None:
    bad = valid_tfjob(cluster, namespace)
    _set(bad, (*WORKER, "backoffLimit"), 3)  # a RunPolicy field, not a ReplicaSpec one
    _set(bad, (*CONTAINER, "tfConfig"), "x")  # not a Container field
    result = server_dry_run(cluster, bad)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    worker = stored["spec"]["tfReplicaSpecs"]["Worker"]
    assert "backoffLimit" not in worker
    assert "tfConfig" not in worker["template"]["spec"]["containers"][0]
    assert diff(bad["spec"], stored["spec"], "spec") == [
        "spec.tfReplicaSpecs.Worker.backoffLimit: sent, not stored",
        "spec.tfReplicaSpecs.Worker.template.spec.containers[0].tfConfig: sent, not stored"]


def test_cancel_deletes_the_tfjob_and_its_config_map(cluster, namespace, with_crd) -> None:
    job = cellship.submit("print('never runs without an operator')\n", workers=2,
                          name="tfjob-cancel", backend="kubernetes",
                          kubernetes=options(cluster, namespace))
    selector = f"{manifests.LABEL_JOB_ID}={job.id}"
    assert sorted(o.split("/")[0] for o in objects(cluster, namespace, selector)) == [
        "ConfigMap", "TFJob"]
    started = time.monotonic()
    record = job.cancel()
    print(f"cancel took {time.monotonic() - started:.1f}s")
    assert record.status == "cancelled"
    assert objects(cluster, namespace, selector) == []


def test_without_the_crd_the_tfjob_launcher_says_so_and_leaves_nothing(
        cluster, namespace, without_crd) -> None:
    with pytest.raises(CellshipError) as caught:
        cellship.submit("print(1)\n", workers=1, name="no-operator", backend="kubernetes",
                        kubernetes=options(cluster, namespace))
    message = str(caught.value)
    assert "TFJob" in message and "install the Kubeflow training operator" in message, message
    assert "drop --launcher" in message, message
    left = objects(cluster, namespace, "app.kubernetes.io/managed-by=cellship",
                   kinds="configmaps,services,pods")
    assert left == [], left
