"""The --launcher tfjob manifest, validated against a JSON schema written from the
structure the Kubeflow training operator's kubeflow.org/v1 TFJob CRD defines
(TFJobSpec: runPolicy, successPolicy, enableDynamicWorker, tfReplicaSpecs; ReplicaSpec:
replicas, template, restartPolicy; replica types Chief/Master/Worker/PS/Evaluator).
Only fields that CRD defines are allowed, so a typo or an invented field fails here."""

from __future__ import annotations

import json

import pytest

from cellship.kube.options import KubernetesOptions
from cellship.train.kubernetes import manifests as m
from cellship.train.spec import JobSpec

jsonschema = pytest.importorskip("jsonschema")

REPLICA_SPEC = {
    "type": "object", "additionalProperties": False, "required": ["template"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 0},
        "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
        "template": {
            "type": "object", "additionalProperties": False, "required": ["spec"],
            "properties": {
                "metadata": {"type": "object", "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "spec": {"type": "object", "required": ["containers"], "properties": {
                    "containers": {"type": "array", "minItems": 1,
                                   # the operator finds its container by this name
                                   "contains": {"type": "object",
                                                "properties": {"name": {"const": "tensorflow"}},
                                                "required": ["name", "image"]}}}}}},
    },
}
RUN_POLICY = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "cleanPodPolicy": {"enum": ["All", "Running", "None"]},
        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
        "activeDeadlineSeconds": {"type": "integer", "minimum": 0},
        "backoffLimit": {"type": "integer", "minimum": 0},
        "schedulingPolicy": {"type": "object"},
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
    },
}
TFJOB_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1"},
        "kind": {"const": "TFJob"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["tfReplicaSpecs"],
            "properties": {
                "runPolicy": RUN_POLICY,
                "successPolicy": {"enum": ["", "AllWorkers"]},
                "enableDynamicWorker": {"type": "boolean"},
                "tfReplicaSpecs": {
                    "type": "object", "minProperties": 1, "additionalProperties": False,
                    "properties": dict.fromkeys(("Chief", "Master", "Worker", "PS", "Evaluator"), REPLICA_SPEC)},
            }},
    },
}

ID = m.JobIdentity("ab12cd34", "digits", "ml")
OPTS = KubernetesOptions(image="registry.local/tf:2.16", launcher="tfjob")


@pytest.mark.parametrize("spec", [JobSpec(), JobSpec(workers=3, gpus=1, max_restarts=2),
                                  JobSpec(workers=2, ps=2, timeout=600)])
def test_tfjob_validates(spec: JobSpec) -> None:
    jsonschema.validate(m.tfjob(ID, spec, OPTS), TFJOB_SCHEMA)


def test_tfjob_replica_layout_and_policies() -> None:
    job = m.tfjob(ID, JobSpec(workers=2, ps=1, gpus=1, max_restarts=2, timeout=90), OPTS)
    specs = job["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Chief": 1, "Worker": 2, "PS": 1}
    assert all(v["restartPolicy"] == "OnFailure" for v in specs.values())
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 2,
                                        "activeDeadlineSeconds": 90}
    worker = specs["Worker"]["template"]["spec"]
    env = {e["name"] for e in worker["containers"][0]["env"]}
    assert "TF_CONFIG" not in env  # the operator sets it
    assert worker["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert "limits" not in specs["PS"]["template"]["spec"]["containers"][0]["resources"]
    assert worker["securityContext"]["runAsNonRoot"] is True
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cellship"


def test_schema_catches_invented_fields() -> None:
    job = m.tfjob(ID, JobSpec(), OPTS)
    job["spec"]["tfReplicaSpecs"]["Worker"]["backoffLimit"] = 3  # not a ReplicaSpec field
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(json.dumps(job)), TFJOB_SCHEMA)
