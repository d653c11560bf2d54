"""The Kubeflow TFJob CustomResourceDefinition (kubeflow.org/v1), built without downloading
anything, for the cluster tier to check cellship's ``--launcher tfjob`` manifest against
a real apiserver's validation and pruning.

The CRD is what the Kubeflow training operator's controller-gen makes of its Go types,
``apiextensions.k8s.io/v1`` with a structural schema:

* the TFJob-specific part is written here from the operator's published v1 API types
  (``TFJobSpec``: ``runPolicy``, ``successPolicy``, ``enableDynamicWorker``,
  ``tfReplicaSpecs``; ``ReplicaSpec``: ``replicas``, ``restartPolicy``, ``template``;
  ``RunPolicy``: ``cleanPodPolicy``, ``ttlSecondsAfterFinished``,
  ``activeDeadlineSeconds``, ``backoffLimit``, ``schedulingPolicy``; ``JobStatus`` as the
  status subresource). ``restartPolicy`` and ``cleanPodPolicy`` are enums of the
  values the types define (upstream's generated CRD leaves them plain strings, and the
  operator refuses other values when it reconciles; here the apiserver refuses them at
  once, which is stricter, never looser);
* the pod template (``core/v1 PodTemplateSpec``) is generated at test time from the
  test apiserver's own OpenAPI document (``/openapi/v2``), the same Go types
  controller-gen reads: ``$ref``s resolved recursively, ``IntOrString`` and
  ``Quantity`` as ``x-kubernetes-int-or-string``, ``Time`` as a date-time string, and
  everything a structural schema forbids or the test needs not (descriptions, patch
  strategies, list/map types) dropped. The template's ``metadata`` is the embedded
  ObjectMeta controller-gen emits (labels, annotations, finalizers, name, namespace).

Correct rather than complete: a recursive type or one nested deeper than ``MAX_DEPTH``
is cut off as an object that keeps its unknown fields, as is an untyped or free-form value
(the core pod types have none of these; :func:`pod_template_schema` reports every such
place so a test can insist there are none).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

CRD_NAME = "tfjobs.kubeflow.org"
GROUP, VERSION, KIND, PLURAL = "kubeflow.org", "v1", "TFJob", "tfjobs"
MAX_DEPTH = 40

REF_PREFIX = "#/definitions/"
POD_TEMPLATE = "io.k8s.api.core.v1.PodTemplateSpec"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
INT_OR_STRING = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString",
                 "io.k8s.apimachinery.pkg.api.resource.Quantity"}
TIMES = {"io.k8s.apimachinery.pkg.apis.meta.v1.Time",
         "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"}
# What controller-gen keeps of an embedded ObjectMeta (generateEmbeddedObjectMeta).
EMBEDDED_META_FIELDS = ("annotations", "finalizers", "labels", "name", "namespace")
# Formats the apiserver knows; others would be meaningless in a CRD.
FORMATS = {"int32", "int64", "float", "double", "byte", "date-time", "date"}

RESTART_POLICIES = ["Always", "OnFailure", "Never", "ExitCode"]
CLEAN_POD_POLICIES = ["None", "All", "Running"]

Kubectl = Callable[..., Any]  # tests.k8s.conftest.Cluster.kubectl


class _Converter:
    """OpenAPI v2 definitions -> a structural OpenAPI v3 schema (CRD dialect)."""

    def __init__(self, definitions: dict[str, Any], max_depth: int = MAX_DEPTH) -> None:
        self.definitions = definitions
        self.max_depth = max_depth
        self.cut_offs: list[str] = []

    def ref(self, name: str, stack: tuple[str, ...]) -> dict[str, Any]:
        if name in INT_OR_STRING:
            return {"x-kubernetes-int-or-string": True}
        if name in TIMES:
            return {"type": "string", "format": "date-time"}
        if name in stack or len(stack) >= self.max_depth:
            self.cut_offs.append(" > ".join((*stack, name)))
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if name not in self.definitions:
            raise KeyError(f"the apiserver's OpenAPI has no definition {name}")
        return self.schema(self.definitions[name], (*stack, name))

    def schema(self, node: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        if "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith(REF_PREFIX), ref
            return self.ref(ref[len(REF_PREFIX):], stack)
        if node.get("format") == "int-or-string":
            return {"x-kubernetes-int-or-string": True}
        out: dict[str, Any] = {}
        kind = node.get("type")
        if kind is None and ("properties" in node or "additionalProperties" in node):
            kind = "object"
        if kind is None:
            # An untyped value (none in core/v1 pods): structural schemas need a type or
            # an explicit "anything goes".
            self.cut_offs.append(" > ".join((*stack, "(untyped)")))
            return {"x-kubernetes-preserve-unknown-fields": True}
        out["type"] = kind
        if node.get("format") in FORMATS:
            out["format"] = node["format"]
        if "enum" in node:
            out["enum"] = list(node["enum"])
        if kind == "object":
            props = node.get("properties") or {}
            if props:
                out["properties"] = {k: self.schema(v, stack) for k, v in props.items()}
                required = [r for r in node.get("required") or () if r in props]
                if required:
                    out["required"] = required
            extra = node.get("additionalProperties")
            if isinstance(extra, dict) and not props:
                out["additionalProperties"] = self.schema(extra, stack)
            elif extra is True and not props:
                self.cut_offs.append(" > ".join((*stack, "(free-form map)")))
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif kind == "array":
            out["items"] = self.schema(node.get("items") or {}, stack)
        return out


def pod_template_schema(openapi: dict[str, Any],
                        max_depth: int = MAX_DEPTH) -> tuple[dict[str, Any], list[str]]:
    """The structural schema of core/v1 PodTemplateSpec from an apiserver's
    ``/openapi/v2`` document, and the paths where recursion or depth cut it off."""
    converter = _Converter(openapi["definitions"], max_depth)
    template = converter.ref(POD_TEMPLATE, ())
    meta = converter.ref(OBJECT_META, ())
    template["properties"]["metadata"] = {
        "type": "object",
        "properties": {k: meta["properties"][k] for k in EMBEDDED_META_FIELDS}}
    return template, converter.cut_offs


def _int(fmt: str) -> dict[str, Any]:
    return {"type": "integer", "format": fmt}


def _date() -> dict[str, Any]:
    return {"type": "string", "format": "date-time"}


def tfjob_schema(openapi: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The TFJob's openAPIV3Schema (and the pod template's cut-offs)."""
    template, cut_offs = pod_template_schema(openapi)
    label_selector = _Converter(openapi["definitions"]).ref(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", ())
    replica_spec = {
        "type": "object",
        "properties": {
            "replicas": _int("int32"),
            "restartPolicy": {"type": "string", "enum": list(RESTART_POLICIES)},
            "template": template}}
    run_policy = {
        "type": "object",
        "properties": {
            "cleanPodPolicy": {"type": "string", "enum": list(CLEAN_POD_POLICIES)},
            "ttlSecondsAfterFinished": _int("int32"),
            "activeDeadlineSeconds": _int("int64"),
            "backoffLimit": _int("int32"),
            "schedulingPolicy": {
                "type": "object",
                "properties": {
                    "minAvailable": _int("int32"),
                    "queue": {"type": "string"},
                    "minResources": {"type": "object", "additionalProperties":
                                     {"x-kubernetes-int-or-string": True}},
                    "priorityClass": {"type": "string"},
                    "scheduleTimeoutSeconds": _int("int32")}}}}
    spec = {
        "type": "object",
        "required": ["tfReplicaSpecs"],
        "properties": {
            "runPolicy": run_policy,
            "successPolicy": {"type": "string"},
            "enableDynamicWorker": {"type": "boolean"},
            "tfReplicaSpecs": {"type": "object", "additionalProperties": replica_spec}}}
    condition = {
        "type": "object", "required": ["type", "status"],
        "properties": {"type": {"type": "string"}, "status": {"type": "string"},
                       "reason": {"type": "string"}, "message": {"type": "string"},
                       "lastUpdateTime": _date(), "lastTransitionTime": _date()}}
    replica_status = {
        "type": "object",
        "properties": {"active": _int("int32"), "succeeded": _int("int32"),
                       "failed": _int("int32"), "labelSelector": label_selector,
                       "selector": {"type": "string"}}}
    status = {
        "type": "object",
        "properties": {"conditions": {"type": "array", "items": condition},
                       "replicaStatuses": {"type": "object",
                                           "additionalProperties": replica_status},
                       "startTime": _date(), "completionTime": _date(),
                       "lastReconcileTime": _date()}}
    root = {
        "type": "object",
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "metadata": {"type": "object"}, "spec": spec, "status": status}}
    return root, cut_offs


def tfjob_crd(openapi: dict[str, Any]) -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    schema, _ = tfjob_schema(openapi)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME,
                     "labels": {"app.kubernetes.io/part-of": "cellship-tests"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": "tfjob"},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "State", "type": "string",
                     "jsonPath": ".status.conditions[-1:].type"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            }]}}


def fetch_openapi(kubectl: Kubectl) -> dict[str, Any]:
    """The apiserver's OpenAPI v2 document."""
    return json.loads(kubectl("get", "--raw", "/openapi/v2").stdout)


def install(kubectl: Kubectl, crd: dict[str, Any], timeout: float = 60.0) -> None:
    """Create the CRD (``create``, not ``apply``: no last-applied annotation to
    outgrow) and wait until it is Established and TFJobs can be listed."""
    kubectl("create", "-f", "-", input=json.dumps(crd))
    deadline = time.monotonic() + timeout
    # Polled by hand: `kubectl wait` right after the create failed once in CI (exit 1).
    while not _established(kubectl):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{CRD_NAME} was created but is not Established after "
                               f"{timeout:g}s")
        time.sleep(0.3)
    while kubectl("get", PLURAL + "." + GROUP, "-A", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{CRD_NAME} is Established but TFJobs cannot be listed")
        time.sleep(0.5)


def _established(kubectl: Kubectl) -> bool:
    out = kubectl("get", "crd", CRD_NAME, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conditions = json.loads(out.stdout).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in conditions)


def is_installed(kubectl: Kubectl) -> bool:
    return kubectl("get", "crd", CRD_NAME, check=False).returncode == 0


def uninstall(kubectl: Kubectl, timeout: float = 90.0) -> None:
    """Delete the CRD (and with it every TFJob) and wait until the API no longer
    serves TFJobs."""
    kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true",
            f"--timeout={int(timeout)}s")
    deadline = time.monotonic() + timeout
    while kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}/{PLURAL}",
                  check=False).returncode == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{CRD_NAME} was deleted but TFJobs are still served")
        time.sleep(0.5)
