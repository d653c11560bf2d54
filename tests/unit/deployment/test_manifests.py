"""The objects cellship deploy makes (Deployment, Service, InferenceService) and the
checks on a DeploySpec before any API call: pure functions, no cluster."""

from __future__ import annotations

import pytest

from cellship.deployment import manifests as mf
from cellship.deployment.spec import VolumeMount, parse_pull_policy
from cellship.errors import UsageError
from cellship.kube.meta import current_user
from tests.unit.deployment.support import IMAGE, spec


# -- manifests -------------------------------------------------------------------------------
def test_deployment_manifest_labels_probes_security_resources() -> None:
    body = mf.deployment(spec(replicas=3, cpu="500m", memory="1Gi", memory_limit="2Gi", gpus=1,
                              image_pull_policy="Never", env={"A": "1"}))
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "cellship",
                                          "cellship.io/user": current_user(),
                                          "cellship.io/deployment": "digits",
                                          "cellship.io/model": "digits"}
    assert body["spec"]["replicas"] == 3
    assert body["spec"]["selector"] == {"matchLabels": {"cellship.io/deployment": "digits"}}
    template = body["spec"]["template"]
    assert template["metadata"]["labels"]["cellship.io/deployment"] == "digits"
    pod_spec = template["spec"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == 1000
    (container,) = pod_spec["containers"]
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "Never"
    assert "command" not in container and "args" not in container  # the image's CMD serves
    assert container["ports"] == [{"name": "http", "containerPort": 8501, "protocol": "TCP"}]
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert ready["httpGet"] == {"path": "/v1/models/digits/metadata", "port": 8501, "scheme": "HTTP"}
    assert live["httpGet"]["path"] == "/v1/models/digits"
    assert live["initialDelaySeconds"] > ready["initialDelaySeconds"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"}}
    assert container["env"] == [{"name": "HOME", "value": "/tmp"}, {"name": "TMPDIR", "value": "/tmp"},
                                {"name": "A", "value": "1"}]
    assert body["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_model_path_runs_the_images_cellship_with_a_volume() -> None:
    body = mf.deployment(spec(model_path="/models/digits", port=9000,
                              volumes=(VolumeMount.parse("/srv/models:/models"),
                                       VolumeMount.parse("models-pvc:/more"))))
    pod_spec = body["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["command"] == ["python3", "-m", "cellship.cli", "serve", "/models/digits",
                                    "--host", "0.0.0.0", "--port", "9000"]
    assert container["readinessProbe"]["httpGet"]["port"] == 9000
    assert pod_spec["volumes"] == [
        {"name": "vol-0", "hostPath": {"path": "/srv/models", "type": "Directory"}},
        {"name": "vol-1", "persistentVolumeClaim": {"claimName": "models-pvc", "readOnly": True}},
        {"name": "tmp", "emptyDir": {}}]  # the read-only root's scratch (kube/podspec.py)
    assert all(m["readOnly"] for m in container["volumeMounts"] if m["name"] != "tmp")
    assert {"name": "CELLSHIP_HOME", "value": "/tmp/cellship"} in container["env"]


def test_service_is_owned_by_the_deployment_and_maps_8501() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "digits", "uid": "uid-9"}}
    svc = mf.service(spec(port=9000), owner)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8501, "targetPort": 9000,
                                     "protocol": "TCP"}]
    assert svc["spec"]["selector"] == {"cellship.io/deployment": "digits"}
    assert svc["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "digits", "uid": "uid-9",
         "controller": True, "blockOwnerDeletion": True}]
    with pytest.raises(ValueError):
        mf.service(spec(), {"metadata": {"name": "digits"}})


def test_inference_service_manifest() -> None:
    body = mf.inference_service(spec(replicas=2))
    assert body["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = body["spec"]["predictor"]
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 2
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/digits/metadata"


def test_for_update_keeps_resource_version_and_cluster_ip() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "digits", "uid": "u"}}
    desired = mf.service(spec(), owner)
    current = {"metadata": {"resourceVersion": "7"},
               "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"]}}
    body = mf.for_update(desired, current)
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["spec"]["clusterIP"] == "10.0.0.5"
    assert "resourceVersion" not in desired["metadata"]  # desired is not changed


# -- spec validation -------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, words", [
    ({"name": "Digits_V1"}, "'digits-v1'"),
    ({"replicas": 0}, "--replicas"),
    ({"memory": "2 GB"}, "2Gi"),
    ({"model_name": "a/b"}, "/v1/models/NAME"),
    ({"image_pull_policy": "Sometimes"}, "IfNotPresent"),
    ({"model_path": "models/x"}, "absolute"),
    ({"run_as_user": 0}, "non-root"),
    ({"port": 70000}, "1-65535"),
])
def test_spec_refuses_with_the_rule(overrides: dict, words: str) -> None:
    with pytest.raises(UsageError) as err:
        spec(**overrides)
    assert words in str(err.value)


def test_small_parsers() -> None:
    assert parse_pull_policy("never") == "Never"
    with pytest.raises(UsageError):
        VolumeMount.parse("/srv/models")
    assert VolumeMount.parse("pvc:/m/").mount_path == "/m"
