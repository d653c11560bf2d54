"""Pure functions: DeploySpec -> the Kubernetes objects of a served model.

Nothing here talks to a cluster, so every manifest is checked by unit tests.

* an apps/v1 **Deployment** ``N`` (``replicas`` pods labelled ``cellship.io/deployment=N``)
  and a ClusterIP **Service** ``N`` (port 8501 -> the container's port) with an
  ownerReference to the Deployment, so deleting the Deployment garbage-collects it;
* or, where KServe is installed, one serving.kserve.io/v1beta1 **InferenceService** ``N``
  whose predictor is a custom container running the same image (KServe makes the
  Deployment/Knative Service, the Service and the routing).

Probes. Both TF Serving and cellship's server answer TF Serving's REST API. Readiness asks
``/v1/models/M/metadata``, not ``/v1/models/M``: cellship's server binds its port before
the model is loaded and answers the status URL with 200 (state LOADING) meanwhile, while
metadata needs an AVAILABLE version on both servers (503 while loading, 404 for a wrong
model name). Liveness asks the status URL ``/v1/models/M`` (cheap, 200 from the moment the
server listens) after a long initial delay, so a slow TensorFlow import is not killed.
"""

from __future__ import annotations

from typing import Any, Mapping

from cellship.deployment.source import with_download_step
from cellship.deployment.spec import DeploySpec
from cellship.kube import meta, podspec
from cellship.kube.kinds import INFERENCE_SERVICE
from cellship.kube.meta import managed_labels
from cellship.kube.names import label_value

LABEL_DEPLOYMENT = "cellship.io/deployment"
LABEL_MODEL = "cellship.io/model"
ANNOTATION_MODEL = "cellship.io/model-name"
ANNOTATION_PORT = "cellship.io/port"
CONTAINER = "server"
KSERVE_CONTAINER = "kserve-container"  # the name KServe requires for a custom predictor
KSERVE_POD_LABEL = "serving.kserve.io/inferenceservice"
SERVICE_PORT = 8501
READINESS = {"initialDelaySeconds": 2, "periodSeconds": 2, "timeoutSeconds": 5,
             "failureThreshold": 3}
LIVENESS = {"initialDelaySeconds": 60, "periodSeconds": 10, "timeoutSeconds": 5,
            "failureThreshold": 6}
GRACE_SECONDS = 15  # long enough to answer in-flight requests, short enough for undeploy


def labels(spec: DeploySpec) -> dict[str, str]:
    return managed_labels() | dict(spec.extra_labels) | {
        LABEL_DEPLOYMENT: spec.name, LABEL_MODEL: label_value(spec.model_name)}


def selector(name: str) -> str:
    """The label selector of a deployment's pods."""
    return f"{LABEL_DEPLOYMENT}={name}"


def model_annotations(spec: DeploySpec) -> dict[str, str]:
    """What ``cellship deployments`` needs later without inspecting the image again."""
    return dict(spec.extra_annotations) | {ANNOTATION_MODEL: spec.model_name,
                                           ANNOTATION_PORT: str(spec.port)}


def status_path(model_name: str) -> str:
    return f"/v1/models/{model_name}"


def probes(spec: DeploySpec) -> dict[str, Any]:
    """readinessProbe + livenessProbe (see the module docstring for why two paths)."""
    def probe(path: str, timing: Mapping[str, int]) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": spec.port, "scheme": "HTTP"}, **timing}

    return {"readinessProbe": probe(status_path(spec.model_name) + "/metadata", READINESS),
            "livenessProbe": probe(status_path(spec.model_name), LIVENESS)}


def resources(spec: DeploySpec) -> dict[str, Any]:
    return podspec.resource_requirements(spec.cpu, spec.memory, spec.cpu_limit,
                                         spec.memory_limit, spec.gpus)


def command(spec: DeploySpec) -> dict[str, list[str]]:
    """``--model-path``: run the image's own cellship server on that path. Otherwise
    nothing: the image's ENTRYPOINT/CMD serves (``cellship build`` images, TF Serving)."""
    if spec.model_path is None:
        return {}
    return {"command": [spec.python, "-m", "cellship.cli", "serve", spec.model_path,
                        "--host", "0.0.0.0", "--port", str(spec.port)]}


def env(spec: DeploySpec) -> dict[str, str]:
    values: dict[str, str] = {}
    if spec.model_path is not None:
        # cellship keeps its data under $CELLSHIP_HOME; a non-root uid may have no home.
        values |= {"CELLSHIP_HOME": "/tmp/cellship", "PYTHONUNBUFFERED": "1"}
    return values | dict(spec.env)


def volumes(spec: DeploySpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read-only volumes: a directory on the node (hostPath), else a claim."""
    vols, mounts = [], []
    for i, volume in enumerate(spec.volumes):
        name = f"vol-{i}"
        if volume.is_host_path:
            vols.append({"name": name, "hostPath": {"path": volume.source, "type": "Directory"}})
            mounts.append({"name": name, "mountPath": volume.mount_path, "readOnly": True})
        else:
            claim, mount = podspec.claim_volume(name, volume.source, volume.mount_path,
                                                read_only=True)
            vols.append(claim)
            mounts.append(mount)
    return vols, mounts


def container(spec: DeploySpec, name: str = CONTAINER) -> dict[str, Any]:
    _, mounts = volumes(spec)
    return podspec.container(
        name, spec.image, command=command(spec).get("command"), env=env(spec),
        ports=[{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        probes=probes(spec), resources=resources(spec), mounts=mounts,
        pull_policy=spec.image_pull_policy)


def pod_spec(spec: DeploySpec, container_name: str = CONTAINER) -> dict[str, Any]:
    vols, _ = volumes(spec)
    body = podspec.pod_spec([container(spec, container_name)], run_as_user=spec.run_as_user,
                            volumes=vols, grace_seconds=GRACE_SECONDS,
                            scheduling=podspec.Scheduling(
                                image_pull_secrets=tuple(spec.image_pull_secrets)))
    return with_download_step(body, spec.model_url, spec.model_name, spec.storage_secret,
                              spec.python)


def deployment(spec: DeploySpec) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec),
                     "annotations": model_annotations(spec)},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {LABEL_DEPLOYMENT: spec.name}},
            # Never below the wanted count while a new image rolls out.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels(spec),
                                      "annotations": model_annotations(spec)},
                         "spec": pod_spec(spec)},
        },
    }


def service(spec: DeploySpec, owner: Mapping[str, Any] | None,
            pod_selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Service of ``spec``'s pods, owned by the Deployment ``owner``. ``owner`` None and
    a ``pod_selector``: a Service that outlives any one Deployment and selects the pods of
    several (``cellship release``: one Service over a model's serving and canary versions)."""
    metadata: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace,
                                "labels": labels(spec), "annotations": model_annotations(spec)}
    if owner is not None:
        metadata["ownerReferences"] = [meta.owner_reference(owner, controller=True)]
    chosen = dict(pod_selector) if pod_selector else {LABEL_DEPLOYMENT: spec.name}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"type": "ClusterIP", "selector": chosen,
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": spec.port,
                                "protocol": "TCP"}]}}


def inference_service(spec: DeploySpec, canary_percent: int | None = None) -> dict[str, Any]:
    """A KServe InferenceService whose predictor is the image as a custom container.
    ``canary_percent``: KServe's ``canaryTrafficPercent``, the share of traffic its newest
    revision (this spec's image) gets while the previous one keeps the rest."""
    predictor = pod_spec(spec, KSERVE_CONTAINER)
    predictor |= {"minReplicas": spec.replicas, "maxReplicas": spec.replicas}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {"apiVersion": INFERENCE_SERVICE.api_version, "kind": INFERENCE_SERVICE.kind,
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec),
                         "annotations": model_annotations(spec)},
            "spec": {"predictor": predictor}}


def for_update(desired: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` made fit to replace ``current`` (a PUT): the current resourceVersion (a
    change meanwhile is a 409, not a lost update) and, for a Service, the cluster IP, which
    may not change."""
    body = {**desired, "metadata": dict(desired["metadata"])}
    version = current.get("metadata", {}).get("resourceVersion")
    if version:
        body["metadata"]["resourceVersion"] = version
    if desired.get("kind") == "Service":
        old = current.get("spec", {})
        body["spec"] = dict(desired["spec"])
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if old.get(key):
                body["spec"][key] = old[key]
    return body


def is_managed(obj: Mapping[str, Any]) -> bool:
    """Whether cellship made this object as a deployment (so it may update or delete it)."""
    return meta.is_managed(obj) and LABEL_DEPLOYMENT in (obj.get("metadata", {}).get("labels") or {})
