"""Golden checks of the objects a job is made of (no cluster needed)."""

from __future__ import annotations

import base64
import json

import pytest

from cellship.errors import UsageError
from cellship.kube.options import KubernetesOptions, Volume
from cellship.train.kubernetes import manifests as m
from cellship.train.spec import JobSpec

ID = m.JobIdentity("ab12cd34", "Digits_CNN", "ml")
OPTS = KubernetesOptions(image="registry.local/tf:2.16", node_selector={"gpu": "a100"},
                         tolerations=({"key": "nvidia.com/gpu", "operator": "Exists",
                                       "effect": "NoSchedule"},),
                         image_pull_secrets=("regcred",), service_account="trainer",
                         volumes=(Volume("data", "/data", read_only=True),
                                  Volume("runs", "/runs")),
                         cpu="2", memory="4Gi", logdir="/runs/tb")


def owner() -> dict:
    cm = m.config_map(ID, "print('hi')\n")
    cm["metadata"]["uid"] = "uid-cm"
    return cm


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_mwms_tf_config_uses_stable_dns_names() -> None:
    pods = m.pods(ID, JobSpec(workers=2), OPTS, owner())
    names = [p["metadata"]["name"] for p in pods]
    assert names == ["digits-cnn-ab12cd34-worker-0", "digits-cnn-ab12cd34-worker-1"]
    config = json.loads(env_of(pods[1])["TF_CONFIG"])
    assert config == {"cluster": {"worker": [
        "digits-cnn-ab12cd34-worker-0.digits-cnn-ab12cd34.ml.svc:2222",
        "digits-cnn-ab12cd34-worker-1.digits-cnn-ab12cd34.ml.svc:2222"]},
        "task": {"type": "worker", "index": 1}}
    for pod in pods:  # hostname.subdomain is what makes the DNS name exist
        assert pod["spec"]["hostname"] == pod["metadata"]["name"]
        assert pod["spec"]["subdomain"] == "digits-cnn-ab12cd34"


def test_parameter_server_tf_config() -> None:
    pods = m.pods(ID, JobSpec(workers=2, ps=1), OPTS, owner())
    assert [p["metadata"]["name"].rsplit("-", 2)[1:] for p in pods] == [
        ["chief", "0"], ["worker", "0"], ["worker", "1"], ["ps", "0"]]
    config = json.loads(env_of(pods[3])["TF_CONFIG"])
    assert config["task"] == {"type": "ps", "index": 0}
    assert config["cluster"]["chief"] == ["digits-cnn-ab12cd34-chief-0.digits-cnn-ab12cd34.ml.svc:2222"]
    assert len(config["cluster"]["worker"]) == 2 and len(config["cluster"]["ps"]) == 1


def test_labels_and_owner_references() -> None:
    pods = m.pods(ID, JobSpec(workers=2), OPTS, owner())
    svc = m.headless_service(ID, owner())
    for obj in [*pods, svc]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "cellship"
        assert labels["cellship.io/job-id"] == "ab12cd34"
        assert obj["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "digits-cnn-ab12cd34",
             "uid": "uid-cm", "blockOwnerDeletion": True}]
    assert pods[1]["metadata"]["labels"]["cellship.io/replica-type"] == "worker"
    assert pods[1]["metadata"]["labels"]["cellship.io/replica-index"] == "1"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    assert svc["spec"]["selector"] == {"cellship.io/job-id": "ab12cd34"}


def test_owner_needs_a_uid() -> None:
    with pytest.raises(ValueError, match="uid"):
        m.owner_reference(m.config_map(ID, "x"))


def test_security_context_is_non_root_without_escalation() -> None:
    pod = m.pods(ID, JobSpec(), OPTS, owner())[0]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    ctx = pod["containers"][0]["securityContext"]
    assert ctx == {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "privileged": False,
                   "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    with pytest.raises(UsageError, match="non-root"):
        KubernetesOptions(image="x", run_as_user=0)


def test_gpu_limits_on_compute_replicas_only() -> None:
    pods = m.pods(ID, JobSpec(workers=1, ps=1, gpus=2), OPTS, owner())
    res = {p["metadata"]["name"].rsplit("-", 2)[1]: p["spec"]["containers"][0]["resources"]
           for p in pods}
    assert res["chief"]["limits"] == {"nvidia.com/gpu": "2"}
    assert res["worker"]["limits"] == {"nvidia.com/gpu": "2"}
    assert "limits" not in res["ps"]
    assert res["ps"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert m.pods(ID, JobSpec(), KubernetesOptions(image="x"), owner())[0]["spec"][
        "containers"][0]["resources"] == {}


@pytest.mark.parametrize("restarts, policy", [(0, "Never"), (3, "OnFailure")])
def test_restart_policy_follows_max_restarts(restarts: int, policy: str) -> None:
    pod = m.pods(ID, JobSpec(max_restarts=restarts), OPTS, owner())[0]
    assert pod["spec"]["restartPolicy"] == policy


def test_scheduling_and_volume_options() -> None:
    spec = m.pods(ID, JobSpec(), OPTS, owner())[0]["spec"]
    assert spec["nodeSelector"] == {"gpu": "a100"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["serviceAccountName"] == "trainer"
    claims = [v["persistentVolumeClaim"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"claimName": "data", "readOnly": True}, {"claimName": "runs", "readOnly": False}]
    mounts = {v["mountPath"]: v for v in spec["containers"][0]["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True and "/runs" in mounts
    env = env_of({"spec": spec})
    assert env["CELLSHIP_LOGDIR"] == "/runs/tb"
    assert env["CELLSHIP_SHIM"] == m.SHIM_DIR and "PYTHONPATH" not in env  # kept: the image's
    assert env["TF_USE_LEGACY_KERAS"] == "1"  # as the local backend


def test_user_env_overrides_defaults_and_command_runs_the_bootstrap() -> None:
    pod = m.pods(ID, JobSpec(env={"TF_USE_LEGACY_KERAS": "0", "BATCH": "64"}), OPTS, owner())[0]
    env = env_of(pod)
    assert env["TF_USE_LEGACY_KERAS"] == "0" and env["BATCH"] == "64"
    assert pod["spec"]["containers"][0]["command"] == [
        "python3", "-u", "/cellship/program/bootstrap.py", "/cellship/program/program.py"]


def test_config_map_carries_program_bootstrap_and_shim() -> None:
    cm = m.config_map(ID, "print('hi')\n", shipped=b"\x80pickle")
    assert cm["data"]["program.py"] == "print('hi')\n"
    assert "def wait_for_peers" in cm["data"]["bootstrap.py"]
    assert "def start(" in cm["data"]["shim.cellship.inside.bootstrap.py"]
    assert {"shim.cellship." + x.replace("/", ".") for x in m.SHIM_MODULES} <= set(cm["data"])
    assert base64.b64decode(cm["binaryData"]["shipped.pkl"]) == b"\x80pickle"
    assert all(len(k) <= 253 and "/" not in k for k in cm["data"])
    # every shim key is mounted at cellship/<module>
    pod = m.pods(ID, JobSpec(), OPTS, owner())[0]["spec"]
    shim = next(v for v in pod["volumes"] if v["name"] == "shim")["configMap"]["items"]
    assert {i["path"] for i in shim} == {f"cellship/{x}" for x in (*m.SHIM_MODULES, "__init__.py")}


def test_shim_is_importable_without_cellship(tmp_path) -> None:
    """The shim must import with only the stdlib: the pod's image has no cellship."""
    import subprocess
    import sys

    for path, text in m.shim_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    code = ("import cellship, cellship.inside.bootstrap, cellship.inside.relay, cellship.inside.eventfile; cellship.job.is_chief; "
            "print(cellship.__file__)")
    # -S: no site-packages (where the editable cellship is); only the shim on PYTHONPATH.
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert str(tmp_path) in out.stdout


def test_missing_image_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--image"):
        m.pods(ID, JobSpec(), KubernetesOptions(), owner())


def test_options_round_trip_and_unknown_keys() -> None:
    assert KubernetesOptions.from_dict(OPTS.to_dict()) == OPTS
    with pytest.raises(UsageError, match="Unknown Kubernetes option"):
        KubernetesOptions.from_dict({"namespce": "x"})
    with pytest.raises(UsageError, match="launcher"):
        KubernetesOptions(launcher="mpi")
    assert OPTS.merged({"namespace": "other"}).namespace == "other"


def test_oversized_program_is_refused_with_advice() -> None:
    with pytest.raises(UsageError, match="at most 1 MiB.*volumes option"):
        m.config_map(ID, "x = 1\n", shipped=b"\0" * (900 * 1024))
