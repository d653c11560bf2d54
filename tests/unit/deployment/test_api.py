"""cellship deploy / undeploy / deployments against the in-memory API (tests/unit/kube_fake.py):
the create and update paths, the KServe branch, waiting and diagnosis, errors."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cellship.cli import main
from cellship.deployment import (
    DeployError,
    DeployFailed,
    DeploymentNotFound,
    DeployTimeout,
    deploy,
    deployments,
    table,
    undeploy,
)
from cellship.deployment import api as deploy_api
from cellship.deployment import manifests as mf
from cellship.deployment.rollout import Target, deployment_state, wait_ready
from cellship.deployment.source import classify, info_from_config
from cellship.errors import UsageError
from cellship.kube.errors import KubernetesForbidden
from cellship.kube.meta import owner_reference
from tests.unit.deployment.support import IMAGE, NS, spec
from tests.unit.kube_fake import FakeKube, serve

KSERVE = "inferenceservices.serving.kserve.io"


class RollingKube(FakeKube):
    """A fake whose Deployments become available at the ``after``-th watch of them (the
    controller finishing the rollout while cellship follows it)."""

    def __init__(self, after: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after = after
        self.looks = 0

    def watch(self, kind: str, namespace: str | None, *, name: str | None = None,
              label_selector: str = "", timeout: float = 60.0):
        if kind == "Deployment":
            self.looks += 1
            for (k, ns, n), obj in list(self.objects.items()):
                if k == kind and self.looks >= self.after:
                    want = obj["spec"]["replicas"]
                    self.set_status(kind, ns, n, {
                        "observedGeneration": 1, "replicas": want, "updatedReplicas": want,
                        "readyReplicas": want, "availableReplicas": want})
        return super().watch(kind, namespace, name=name, label_selector=label_selector,
                             timeout=timeout)


@pytest.fixture
def kube() -> RollingKube:
    return RollingKube()


def run(kube: FakeKube, image: str = IMAGE, **kwargs: Any):
    kwargs.setdefault("namespace", NS)
    kwargs.setdefault("model_name", "digits")
    kwargs.setdefault("poll", 0.001)
    return deploy(image, kwargs.pop("name", "digits"), client=kube, **kwargs)


def pod(name: str, deployment: str = "digits", status: dict | None = None,
        image: str = IMAGE, owner: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": NS,
                  "labels": {mf.LABEL_DEPLOYMENT: deployment,
                             "app.kubernetes.io/managed-by": "cellship"}}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "server", "image": image,
                                     "readinessProbe": {"httpGet": {"path": "/v1/models/digits/metadata"}}}]},
            "status": status or {"phase": "Pending"}}


def add_pod(kube: FakeKube, body: dict) -> None:
    status = body.pop("status")
    kube.create(body)
    kube.set_pod(NS, body["metadata"]["name"], status)


# -- MODEL_OR_IMAGE --------------------------------------------------------------------------
def _store_model(home, name: str = "digits") -> None:
    version = home / "models" / name / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")


def test_a_model_name_says_to_build_an_image_first(cellship_home) -> None:
    _store_model(cellship_home)
    assert classify("digits").kind == "model"
    with pytest.raises(UsageError) as err:
        run(FakeKube(), image="digits")
    text = str(err.value)
    assert "cellship build digits --base" in text and "--tag" in text
    assert "cellship deploy REGISTRY/digits:v1 --name digits" in text


def test_neither_model_nor_image() -> None:
    with pytest.raises(UsageError) as err:
        classify("nosuch")
    assert "neither a model" in str(err.value)
    assert classify("busybox:1.36").kind == "image"


def test_model_with_base_and_tag_builds_then_deploys(cellship_home, kube, monkeypatch) -> None:
    _store_model(cellship_home)
    built = []

    def fake_build(model, base, tag, kind=None, progress=None):
        built.append((model, base, tag))
        return "127.0.0.1:5000/digits@sha256:" + "a" * 64, "digits"

    monkeypatch.setattr(deploy_api, "build_image", fake_build)
    result = deploy("digits", "digits", namespace=NS, client=kube, base="tensorflow/serving:2.14.1",
                    tag="127.0.0.1:5000/digits:v1", poll=0.001)
    assert built == [("digits", "tensorflow/serving:2.14.1", "127.0.0.1:5000/digits:v1")]
    assert result.image.endswith("@sha256:" + "a" * 64) and result.model_name == "digits"


def test_image_config_gives_model_name_and_port() -> None:
    tf_serving = {"config": {"Env": ["PATH=/usr/bin", "MODEL_NAME=digits"],
                             "ExposedPorts": {"8500/tcp": {}, "8501/tcp": {}},
                             "Labels": {"io.cellship.kind": "tf-serving"}}}
    assert info_from_config(tf_serving).model_name == "digits"
    assert info_from_config(tf_serving).port == 8501
    custom = {"config": {"Labels": {"io.cellship.model": "m"}, "ExposedPorts": {"9000/tcp": {}}}}
    assert (info_from_config(custom).model_name, info_from_config(custom).port) == ("m", 9000)
    assert info_from_config({}).model_name is None


def test_model_name_is_read_from_the_image_when_not_given(kube, monkeypatch) -> None:
    from cellship.deployment.source import ImageInfo

    monkeypatch.setattr(deploy_api, "inspect_image", lambda ref: ImageInfo("mnist", 9000, "python"))
    result = run(kube, model_name=None)
    assert (result.model_name, result.port) == ("mnist", 9000)
    monkeypatch.setattr(deploy_api, "inspect_image", lambda ref: ImageInfo())
    with pytest.raises(UsageError) as err:
        run(kube, model_name=None, name="other")
    assert "--model-name" in str(err.value)


# -- create, wait, reach ---------------------------------------------------------------------
def test_deploy_creates_deployment_then_owned_service_and_waits(kube) -> None:
    lines: list[str] = []
    result = run(kube, replicas=2, progress=lines.append)
    assert [c for c in kube.calls if c[0] == "create"] == [
        ("create", "Deployment", "digits"), ("create", "Service", "digits")]
    dep = kube.get("Deployment", NS, "digits")
    svc = kube.get("Service", NS, "digits")
    assert svc["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    assert (result.action, result.ready, result.replicas, result.kind) == ("created", 2, 2, "Deployment")
    assert result.url == "http://digits.ml.svc:8501/v1/models/digits"
    assert result.port_forward == "kubectl port-forward -n ml svc/digits 8501:8501"
    assert "curl -s -X POST http://localhost:8501/v1/models/digits:predict" in result.curl
    text = result.how_to_reach()
    assert result.url in text and result.port_forward in text
    assert any("created Deployment and Service digits" in line for line in lines)
    # deleting the Deployment garbage-collects the Service
    kube.delete("Deployment", NS, "digits")
    assert ("Service", NS, "digits") not in kube.objects


def test_no_wait_returns_at_once(kube) -> None:
    kube.after = 10**6
    result = run(kube, wait=False)
    assert (result.waited, result.ready) == (False, 0)
    assert "not waited for" in result.how_to_reach()


def test_namespace_defaults_to_the_context(kube) -> None:
    result = deploy(IMAGE, "digits", model_name="digits", client=kube, poll=0.001)
    assert result.namespace == "default"


def test_redeploy_updates_instead_of_409(kube) -> None:
    run(kube)
    kube.objects[("Service", NS, "digits")]["spec"]["clusterIP"] = "10.0.0.7"
    uid = kube.get("Deployment", NS, "digits")["metadata"]["uid"]
    result = run(kube, image="registry.example.com/team/digits:v2", replicas=3)
    assert result.action == "updated"
    assert ("replace", "Deployment", "digits") in kube.calls
    assert ("replace", "Service", "digits") in kube.calls
    dep = kube.get("Deployment", NS, "digits")
    assert dep["metadata"]["uid"] == uid
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2")
    assert dep["spec"]["replicas"] == 3
    assert kube.get("Service", NS, "digits")["spec"]["clusterIP"] == "10.0.0.7"


def test_update_retries_a_conflict_once(kube) -> None:
    from cellship.kube.errors import KubernetesConflict

    run(kube)
    original = kube.replace
    failures = [KubernetesConflict("changed", 409)]

    def flaky(body):
        if failures:
            raise failures.pop()
        return original(body)

    kube.replace = flaky  # type: ignore[method-assign]
    assert run(kube, image="registry.example.com/team/digits:v2").action == "updated"


def test_refuses_to_touch_objects_cellship_did_not_make(kube) -> None:
    kube.create({"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "digits", "namespace": NS, "labels": {"app": "x"}},
                 "spec": {"replicas": 1}})
    with pytest.raises(DeployError) as err:
        run(kube)
    assert "cellship did not make it" in str(err.value)
    with pytest.raises(DeployError):
        undeploy("digits", namespace=NS, client=kube)


def test_service_failure_takes_the_new_deployment_back(kube) -> None:
    kube.fail_on[("create", "Service")] = KubernetesForbidden(
        "Kubernetes refused: you may not create services in namespace ml (403 Forbidden).",
        "create", "services", NS)
    with pytest.raises(KubernetesForbidden) as err:
        run(kube)
    assert "create services" in str(err.value)
    assert ("Deployment", NS, "digits") not in kube.objects


# -- waiting and diagnosis -------------------------------------------------------------------
def never_pull(name: str = "digits-abc") -> dict:
    return pod(name, image="cellship/missing:0", status={
        "phase": "Pending",
        "containerStatuses": [{"name": "server", "restartCount": 0, "ready": False, "state": {
            "waiting": {"reason": "ErrImageNeverPull",
                        "message": 'Container image "cellship/missing:0" is not present with '
                                   "pull policy of Never"}}}]})


def test_image_that_is_never_pulled_fails_at_once(kube) -> None:
    kube.after = 10**6
    kube.create(mf.deployment(spec()))  # as if deployed before: the pods exist already
    add_pod(kube, never_pull())
    with pytest.raises(DeployFailed) as err:
        run(kube, timeout=30)
    text = str(err.value)
    assert "ErrImageNeverPull" in text and "not on the node" in text
    assert "cellship undeploy digits -n ml" in text
    assert err.value.diagnosis.reason == "ImagePull"


def test_crash_loop_names_kubectl_logs(kube) -> None:
    kube.after = 10**6
    run(kube, wait=False)
    add_pod(kube, pod("digits-x", status={
        "phase": "Running",
        "containerStatuses": [{"name": "server", "restartCount": 3, "ready": False,
                               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                               "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}))
    with pytest.raises(DeployFailed) as err:
        run(kube)
    assert "kubectl logs -n ml digits-x --previous" in str(err.value)


def test_ready_pods_are_not_diagnosed(kube) -> None:
    add_pod(kube, pod("digits-old", status={
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "server", "restartCount": 2, "ready": True,
                               "state": {"running": {}},
                               "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}))
    assert run(kube).ready == 1


def test_unschedulable_is_reported_at_the_timeout(kube) -> None:
    kube.after = 10**6
    run(kube, wait=False)
    add_pod(kube, pod("digits-p", status={"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient memory."}]}))
    with pytest.raises(DeployTimeout) as err:
        run(kube, timeout=0.05)
    text = str(err.value)
    assert "0 of 1 replica(s)" in text and "Insufficient memory" in text
    assert "--timeout" in text


def test_replica_failure_condition_fails(kube) -> None:
    kube.after = 10**6
    run(kube, wait=False)
    kube.set_status("Deployment", NS, "digits", {"conditions": [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": 'pods "digits-1" is forbidden: exceeded quota'}]})
    with pytest.raises(DeployFailed) as err:
        run(kube)
    assert "exceeded quota" in str(err.value)


def test_a_server_answering_404_fails_after_a_while() -> None:
    kube = FakeKube()
    kube.create(mf.deployment(spec()))
    add_pod(kube, pod("digits-a", status={"phase": "Running", "containerStatuses": [
        {"name": "server", "restartCount": 0, "ready": False, "state": {"running": {}}}]}))
    kube.set_events("Pod", "digits-a", [{
        "type": "Warning", "reason": "Unhealthy",
        "message": "Readiness probe failed: HTTP probe failed with statuscode: 404"}])
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(DeployFailed) as err:
        wait_ready(kube, Target("Deployment", NS, "digits", 1, mf.selector("digits")), 600,
                   poll=0.01, stuck_after=0.3, progress=lines.append)
    assert 0.3 <= time.monotonic() - started < 5
    assert "--model-name" in str(err.value) and "/v1/models/digits/metadata" in str(err.value)
    assert len(lines) == 1  # progress only when something changes


def test_deployment_state_follows_kubectl_rollout_status() -> None:
    def dep(status: dict, generation: int = 2) -> dict:
        return {"metadata": {"generation": generation}, "spec": {"replicas": 2}, "status": status}

    assert not deployment_state(dep({"observedGeneration": 1})).done
    old = deployment_state(dep({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
                                "availableReplicas": 2}))
    assert not old.done and "old replica" in old.waiting_for
    done = deployment_state(dep({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                                 "availableReplicas": 2, "readyReplicas": 2}))
    assert done.done and done.ready == 2


# -- KServe ----------------------------------------------------------------------------------
def test_kserve_crd_makes_an_inference_service(kube) -> None:
    kube.crds = {KSERVE}
    result = run(kube, wait=False)
    assert result.kind == "InferenceService"
    assert ("InferenceService", NS, "digits") in kube.objects
    assert ("Deployment", NS, "digits") not in kube.objects
    assert ("Service", NS, "digits") not in kube.objects
    kube.set_status("InferenceService", NS, "digits", {
        "url": "http://digits.ml.example.com",
        "conditions": [{"type": "Ready", "status": "True"}]})
    waited = run(kube)
    assert waited.action == "updated" and waited.waited
    assert waited.url == "http://digits.ml.example.com/v1/models/digits"
    assert waited.port_forward is None
    assert [d.kind for d in deployments(namespace=NS, client=kube)] == ["InferenceService"]
    undeploy("digits", namespace=NS, client=kube, poll=0.001)
    assert ("InferenceService", NS, "digits") not in kube.objects


def test_kind_deployment_is_forced_even_with_kserve(kube) -> None:
    kube.crds = {KSERVE}
    assert run(kube, kind="deployment").kind == "Deployment"
    assert ("InferenceService", NS, "digits") not in kube.objects
    with pytest.raises(DeployError) as err:  # the name is a Deployment now
        run(kube, kind="kserve")
    assert "undeploy it first" in str(err.value)


def test_kind_kserve_without_the_crd(kube) -> None:
    with pytest.raises(UsageError) as err:
        run(kube, kind="kserve")
    assert "install KServe" in str(err.value)


# -- undeploy and listing --------------------------------------------------------------------
def test_undeploy_deletes_foreground_and_waits_for_pods(kube) -> None:
    run(kube)
    owner = kube.get("Deployment", NS, "digits")
    add_pod(kube, pod("digits-1", owner=owner))
    result = undeploy("digits", namespace=NS, client=kube, poll=0.001)
    assert ("delete", "Deployment", "digits", "Foreground") in kube.calls
    assert not kube.list("Pod", NS, mf.selector("digits"))
    assert ("Service", NS, "digits") not in kube.objects
    assert result.summary() == ("Deployment digits and its Service deleted from namespace ml; "
                                "all of its pods are gone")


def test_undeploy_of_a_missing_name_lists_what_exists(kube) -> None:
    run(kube, name="mnist")
    with pytest.raises(DeploymentNotFound) as err:
        undeploy("digits", namespace=NS, client=kube)
    assert "No cellship deployment named 'digits' in namespace ml" in str(err.value)
    assert "mnist" in str(err.value)


def test_undeploy_reports_pods_that_do_not_go(kube) -> None:
    run(kube)
    add_pod(kube, pod("digits-stuck"))  # not owned: the fake's GC leaves it
    with pytest.raises(DeployTimeout) as err:
        undeploy("digits", namespace=NS, client=kube, timeout=0.02, poll=0.005)
    assert "1 pod(s) were still stopping" in str(err.value)


def test_deployments_lists_ready_desired_image(kube) -> None:
    run(kube, replicas=2)
    run(kube, name="mnist", image="registry.example.com/team/mnist:v3", model_name="mnist",
        wait=False)
    items = deployments(namespace=NS, client=kube)
    assert [(d.name, d.ready, d.desired, d.image, d.model_name) for d in items] == [
        ("digits", 2, 2, IMAGE, "digits"),
        ("mnist", 0, 1, "registry.example.com/team/mnist:v3", "mnist")]
    text = table(items)
    assert text.splitlines()[0].split() == ["NAME", "KIND", "READY", "MODEL", "IMAGE", "URL"]
    assert "2/2" in text and "http://digits.ml.svc:8501/v1/models/digits" in text


# -- CLI -------------------------------------------------------------------------------------
@pytest.fixture
def cli_kube(monkeypatch, kube) -> RollingKube:
    serve(monkeypatch, kube)
    kube.after = 1  # ready at the first look: the CLI polls once a second
    return kube


def test_cli_deploy_list_undeploy(cli_kube, capsys) -> None:
    assert main(["deploy", IMAGE, "--name", "digits", "-n", NS, "--model-name", "digits",
                 "--replicas", "2", "--cpu", "250m", "--image-pull-policy", "never",
                 "--env", "A=1", "--timeout", "5"]) == 0
    out, err = capsys.readouterr()
    assert "kubectl port-forward -n ml svc/digits 8501:8501" in out
    assert "cellship: created Deployment and Service digits" in err
    container = cli_kube.get("Deployment", NS, "digits")["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "Never"
    assert container["resources"] == {"requests": {"cpu": "250m"}}
    assert main(["deployments", "-n", NS, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "digits" and listed[0]["ready"] == 2
    assert main(["undeploy", "digits", "-n", NS]) == 0
    assert "deleted from namespace ml" in capsys.readouterr().out


def test_cli_errors_are_sentences(cli_kube, capsys) -> None:
    assert main(["undeploy", "nosuch", "-n", NS]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellship: error: No cellship deployment named 'nosuch'")
    assert "Traceback" not in err
    assert main(["deploy", IMAGE, "--name", "Bad_Name", "--model-name", "m"]) == 1
    assert "not usable as a Kubernetes Service name" in capsys.readouterr().err


def test_cli_json_result(cli_kube, capsys) -> None:
    assert main(["deploy", IMAGE, "--name", "digits", "-n", NS, "--model-name", "digits",
                 "--json", "-q", "--no-wait"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["url"] == "http://digits.ml.svc:8501/v1/models/digits"
    assert data["waited"] is False


# -- KServe where RBAC refuses to say ----------------------------------------------------------
def test_a_403_on_kserve_means_a_plain_deployment(kube) -> None:
    kube.crds = {KSERVE}
    kube.fail_on[("has_crd", "InferenceService")] = KubernetesForbidden(
        "Kubernetes refused: you may not list inferenceservices.serving.kserve.io in namespace "
        "ml (403 Forbidden).", "list", KSERVE, NS)
    assert run(kube).kind == "Deployment"
