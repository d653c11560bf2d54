"""Every pod cellship generates meets the Pod Security Standards' "restricted" profile,
field by field, plus a read-only root with writable scratch; and the checker that says so
(tests/pod_security.py) refuses each violation by its field, so its silence means something."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from cellship.deployment import manifests as deploy_manifests
from cellship.deployment.spec import DeploySpec, VolumeMount
from cellship.kube import podspec
from cellship.kube.options import KubernetesOptions, Volume
from cellship.runs.kubernetes import manifests as batch_manifests
from cellship.train.kubernetes import manifests as train_manifests
from cellship.train.spec import JobSpec
from tests import pod_security as pss

OPTIONS = KubernetesOptions(image="tf:1", image_pull_secrets=("regcred",),
                            volumes=(Volume("data", "/data", read_only=True),), cpu="1")
OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "uid": "u"}}
IDENTITY = train_manifests.JobIdentity("ab12cd34", "digits", "ml")


def manifests() -> dict[str, dict[str, Any]]:
    """One object of every kind that carries a pod, as cellship generates them: training
    pods (chief with the keeper sidecar, workers, a parameter server with GPUs asked),
    the TFJob launcher's replicas, a batch run's Job, a Deployment and an InferenceService
    (served from a claim: see test_host_path_is_the_one_way_out)."""
    spec = JobSpec(workers=2, ps=1, gpus=1)
    pods = train_manifests.pods(IDENTITY, spec, OPTIONS, OWNER)
    out = {p["metadata"]["name"]: p for p in pods}
    tfjob_options = KubernetesOptions(image="tf:1", launcher="tfjob")
    out["tfjob"] = train_manifests.tfjob(IDENTITY, spec, tfjob_options)
    run = batch_manifests.RunIdentity("ab12cd34", "sweep", 0, 0, "ml")
    out["batch"] = batch_manifests.job(run, batch_manifests.BatchSettings(OPTIONS), "python3")
    served = DeploySpec(name="digits", image="srv:1", model_name="digits", namespace="ml",
                        model_path="/models/digits", image_pull_secrets=("regcred",),
                        volumes=(VolumeMount.parse("models:/models"),))
    out["deployment"] = deploy_manifests.deployment(served)
    out["inferenceservice"] = deploy_manifests.inference_service(served)
    return out


def all_containers(obj: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(spec, c) for spec, _ in pss.pod_templates(obj)
            for kind in pss.CONTAINER_LISTS for c in spec.get(kind) or ()]


def test_every_generated_pod_meets_restricted_field_by_field() -> None:
    found = manifests()
    chief = found[IDENTITY.pod(train_manifests.chief(JobSpec(workers=2, ps=1)))]
    assert [c["name"] for c in chief["spec"]["containers"]] == ["tensorflow", "keeper"]
    for what, obj in found.items():
        assert pss.check_object(obj) == [], what
        for spec, container in all_containers(obj):
            # The fields the profile names, as the builder sets them (not by inheritance).
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, what
            assert context["capabilities"] == {"drop": ["ALL"]}, what
            assert context["readOnlyRootFilesystem"] is True, what
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] == 1000


def test_every_container_has_writable_scratch_and_home_there() -> None:
    for what, obj in manifests().items():
        for spec, container in all_containers(obj):
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert "emptyDir" in volume and not mount.get("readOnly"), what
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["HOME"] == env["TMPDIR"] == "/tmp", what
            # Every other writable mount is an emptyDir or a claim, never the image.
            for other in container["volumeMounts"]:
                source = next(v for v in spec["volumes"] if v["name"] == other["name"])
                assert {"emptyDir", "configMap", "persistentVolumeClaim"} & set(source), what


def test_a_feature_or_user_home_wins_and_a_feature_scratch_is_not_doubled() -> None:
    body = podspec.container("c", "i", env={"HOME": "/work/home"},
                             mounts=[{"name": "mine", "mountPath": "/tmp/"}])
    assert {e["name"]: e["value"] for e in body["env"]}["HOME"] == "/work/home"
    assert [m["name"] for m in body["volumeMounts"]] == ["mine"]
    spec = podspec.pod_spec([body], run_as_user=1000,
                            volumes=[{"name": "mine", "emptyDir": {}}])
    assert spec["volumes"] == [{"name": "mine", "emptyDir": {}}]
    batch = manifests()["batch"]["spec"]["template"]["spec"]
    assert [v["name"] for v in batch["volumes"]].count("scratch") == 1
    assert not any(v["name"] == podspec.SCRATCH_VOLUME for v in batch["volumes"])


def test_host_path_is_the_one_way_out() -> None:
    """``cellship deploy --volume /node/dir:/models`` is a hostPath (single-node clusters):
    the user's explicit choice, and the only field a restricted namespace refuses."""
    served = DeploySpec(name="d", image="srv:1", model_name="m", model_path="/models/m",
                        volumes=(VolumeMount.parse("/srv/models:/models"),))
    found = pss.check_object(deploy_manifests.deployment(served))
    assert [(v.field, v.control) for v in found] == [("spec.volumes[0].hostPath",
                                                      "HostPath Volumes")]


def _ctx(spec: dict, i: int = 0, kind: str = "containers") -> dict:
    return spec[kind][i].setdefault("securityContext", {})


def _pod_ctx(spec: dict) -> dict:
    return spec.setdefault("securityContext", {})


def _job_volume_as(spec: dict, kind: str, body: dict) -> None:
    """The job dir's emptyDir (volume 2) turned into a volume of another type."""
    spec["volumes"][2] = {"name": "job", kind: body}


def _init_container(spec: dict) -> None:
    spec["initContainers"] = [{"name": "init", "image": "busybox"}]


# (the field(s) the checker must name, how to break it): one per control and per place.
VIOLATIONS: list[tuple[str, Callable[[dict], Any]]] = [
    ("spec.hostNetwork", lambda s: s.update(hostNetwork=True)),
    ("spec.hostPID", lambda s: s.update(hostPID=True)),
    ("spec.hostIPC", lambda s: s.update(hostIPC=True)),
    ("spec.containers[0].securityContext.privileged", lambda s: _ctx(s).update(privileged=True)),
    ("spec.containers[1].securityContext.privileged",
     lambda s: _ctx(s, 1).update(privileged=True)),  # the keeper sidecar counts too
    ("spec.containers[0].ports[0].hostPort", lambda s: s["containers"][0]["ports"][0].update(
        hostPort=2222)),
    ("spec.volumes[2].hostPath", lambda s: _job_volume_as(s, "hostPath", {"path": "/"})),
    ("spec.volumes[2].gitRepo", lambda s: _job_volume_as(s, "gitRepo", {"repository": "x"})),
    ("spec.volumes[2].nfs", lambda s: _job_volume_as(s, "nfs", {"server": "x", "path": "/"})),
    ("spec.securityContext.runAsNonRoot", lambda s: _pod_ctx(s).update(runAsNonRoot=False)),
    ("spec.containers[0].securityContext.runAsNonRoot",
     lambda s: _ctx(s).update(runAsNonRoot=False)),
    ("spec.securityContext.runAsUser", lambda s: _pod_ctx(s).update(runAsUser=0)),
    ("spec.containers[1].securityContext.runAsUser", lambda s: _ctx(s, 1).update(runAsUser=0)),
    ("spec.containers[0].securityContext.allowPrivilegeEscalation",
     lambda s: _ctx(s).update(allowPrivilegeEscalation=True)),
    ("spec.containers[1].securityContext.allowPrivilegeEscalation",
     lambda s: _ctx(s, 1).pop("allowPrivilegeEscalation")),  # unset is not false
    ("spec.containers[0].securityContext.capabilities.drop",
     lambda s: _ctx(s).update(capabilities={"drop": ["NET_RAW"]})),
    ("spec.containers[0].securityContext.capabilities.add",
     lambda s: _ctx(s).update(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]})),
    # The pod's Unconfined is also what its two containers, which set none, then run with.
    ("spec.securityContext.seccompProfile.type "
     "spec.containers[0].securityContext.seccompProfile.type "
     "spec.containers[1].securityContext.seccompProfile.type",
     lambda s: _pod_ctx(s).update(seccompProfile={"type": "Unconfined"})),
    ("spec.containers[0].securityContext.seccompProfile.type",
     lambda s: _ctx(s).update(seccompProfile={"type": "Unconfined"})),
    ("spec.containers[0].securityContext.procMount",
     lambda s: _ctx(s).update(procMount="Unmasked")),
    ("spec.securityContext.sysctls[0].name",
     lambda s: _pod_ctx(s).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}])),
    ("spec.containers[0].securityContext.seLinuxOptions.type",
     lambda s: _ctx(s).update(seLinuxOptions={"type": "spc_t"})),
    ("spec.securityContext.seLinuxOptions.user",
     lambda s: _pod_ctx(s).update(seLinuxOptions={"user": "root"})),
    ("spec.containers[0].securityContext.windowsOptions.hostProcess",
     lambda s: _ctx(s).update(windowsOptions={"hostProcess": True})),
    ("spec.containers[0].securityContext.appArmorProfile.type",
     lambda s: _ctx(s).update(appArmorProfile={"type": "Unconfined"})),
    ("spec.containers[0].securityContext.readOnlyRootFilesystem",
     lambda s: _ctx(s).update(readOnlyRootFilesystem=False)),
]


@pytest.mark.parametrize("field, breaks", VIOLATIONS, ids=[f.split()[0] for f, _ in VIOLATIONS])
def test_the_checker_refuses_each_violation_naming_its_field(field: str, breaks) -> None:
    chief = manifests()[IDENTITY.pod(train_manifests.chief(JobSpec(workers=2, ps=1)))]
    spec = copy.deepcopy(chief["spec"])
    assert spec["volumes"][2] == {"name": "job", "emptyDir": {}}  # what the volume cases replace
    breaks(spec)
    found = pss.violations(spec)
    assert [v.field for v in found] == field.split(), [str(v) for v in found]


def test_an_init_container_is_checked_like_the_others() -> None:
    spec = copy.deepcopy(manifests()["batch"]["spec"]["template"]["spec"])
    _init_container(spec)
    fields = {v.field for v in pss.violations(spec)}
    assert fields == {"spec.initContainers[0].securityContext.allowPrivilegeEscalation",
                      "spec.initContainers[0].securityContext.capabilities.drop",
                      "spec.initContainers[0].securityContext.readOnlyRootFilesystem"}, fields


def test_pod_level_fields_cover_containers_that_leave_them_unset() -> None:
    """As the profile says: runAsNonRoot and seccomp may be set on the pod alone, and then
    an unset container field passes; without the pod's they are the container's to set."""
    spec = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "Localhost"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"],
                                                                    "add": ["NET_BIND_SERVICE"]}}}]}
    assert pss.violations(spec, read_only_root=False) == []
    del spec["securityContext"]
    assert {v.field for v in pss.violations(spec, read_only_root=False)} == {
        "spec.containers[0].securityContext.runAsNonRoot",
        "spec.containers[0].securityContext.seccompProfile.type"}


def test_apparmor_annotations_are_checked() -> None:
    spec = manifests()["batch"]["spec"]["template"]["spec"]
    key = "container.apparmor.security.beta.kubernetes.io/tensorflow"
    assert pss.violations(spec, {key: "runtime/default"}) == []
    assert [v.field for v in pss.violations(spec, {key: "unconfined"})] == [
        f"metadata.annotations[{key}]"]
