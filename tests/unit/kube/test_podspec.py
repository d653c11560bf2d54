"""The one pod-spec builder: training pods, batch-run Jobs and served models get the same
security context and scheduling from it, and their own parts stay theirs."""

from __future__ import annotations

from cellship.deployment import manifests as deploy_manifests
from cellship.deployment.spec import DeploySpec
from cellship.kube import podspec
from cellship.kube.options import KubernetesOptions, Volume
from cellship.runs.kubernetes import manifests as batch_manifests
from cellship.train.kubernetes import manifests as train_manifests
from cellship.train.spec import JobSpec

OPTIONS = KubernetesOptions(image="tf:1", node_selector={"gpu": "a100"},
                            tolerations=({"key": "gpu", "operator": "Exists"},),
                            image_pull_secrets=("regcred",), service_account="trainer",
                            volumes=(Volume("data", "/data", read_only=True, sub_path="a"),),
                            cpu="1", memory_limit="2Gi", run_as_user=1234)


def pods() -> dict[str, dict]:
    identity = train_manifests.JobIdentity("ab12cd34", "digits", "ml")
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "uid": "u"}}
    run = batch_manifests.RunIdentity("ab12cd34", "sweep", 0, 0, "ml")
    settings = batch_manifests.BatchSettings(OPTIONS)
    served = DeploySpec(name="digits", image="srv:1", model_name="digits", namespace="ml",
                        image_pull_secrets=("regcred",), run_as_user=1234)
    return {"train": train_manifests.pods(identity, JobSpec(), OPTIONS, owner)[0]["spec"],
            "batch": batch_manifests.job(run, settings, "python3")["spec"]["template"]["spec"],
            "deploy": deploy_manifests.deployment(served)["spec"]["template"]["spec"]}


def test_every_pod_runs_non_root_without_privileges() -> None:
    for what, spec in pods().items():
        assert spec["securityContext"] == podspec.pod_security(1234), what
        assert spec["enableServiceLinks"] is False, what
        for container in spec["containers"]:
            assert container["securityContext"] == podspec.container_security(), what
    assert podspec.pod_security(1000)["runAsNonRoot"] is True
    assert podspec.container_security()["allowPrivilegeEscalation"] is False


def test_scheduling_and_claims_come_from_the_same_options() -> None:
    found = pods()
    for what in ("train", "batch"):
        spec = found[what]
        assert spec["nodeSelector"] == {"gpu": "a100"}, what
        assert spec["tolerations"][0] == {"key": "gpu", "operator": "Exists"}, what
        assert spec["serviceAccountName"] == "trainer", what
        assert {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "data",
                                                           "readOnly": True}} in spec["volumes"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "pvc-0")
        assert mount == {"name": "pvc-0", "mountPath": "/data", "readOnly": True, "subPath": "a"}
        assert spec["containers"][0]["resources"] == {"requests": {"cpu": "1"},
                                                      "limits": {"memory": "2Gi"}}
    assert all(s["imagePullSecrets"] == [{"name": "regcred"}] for s in found.values())
    assert "nodeSelector" not in found["deploy"]


def test_resources_ask_only_for_what_was_given() -> None:
    assert podspec.resource_requirements(None, None, None, None) == {}
    assert podspec.resource_requirements("1", None, None, None, gpus=2) == {
        "requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}
