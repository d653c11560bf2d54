"""``--dry-run --backend kubernetes``: the objects the backend would create, as YAML.

Built by the very functions :class:`~cellship.train.kubernetes.backend.KubernetesBackend`
launches with (:mod:`cellship.train.kubernetes.manifests`), so what is shown is what would be sent;
only what the cluster or the store decides at submit time is a placeholder: the job id
(part of every name), the owner's uid, and the namespace when none was given. Nothing
here talks to a cluster, so a dry run works without a kubeconfig.

The ConfigMap's data (program, bootstrap, shim modules) is summarised by size: the program
is printed above it, the rest is cellship's own code.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping

from cellship.kube.options import KubernetesOptions
from cellship.train.kubernetes import manifests
from cellship.train.kubernetes.default_image import planned_image
from cellship.train.kubernetes.manifests import JobIdentity
from cellship.train.program import Program
from cellship.train.spec import JobSpec
from cellship.train.tfconfig import tf_configs

PLACEHOLDER_ID = "00000000"  # job ids are 8 hex characters, picked at submit
PLACEHOLDER_UID = "<uid assigned by the API server>"
DEFAULT_NAMESPACE = "default"


def manifests_text(spec: JobSpec, program: Program, options: Mapping[str, Any]) -> str:
    """The dry-run section for the kubernetes backend: TF_CONFIGs, then the manifests."""
    opts = KubernetesOptions.from_dict(options)
    opts = dataclasses.replace(opts, image=planned_image(opts, spec.gpus, spec.env))
    namespace = opts.namespace or DEFAULT_NAMESPACE
    identity = JobIdentity(PLACEHOLDER_ID, spec.name or "train", namespace)
    shipped = b"" if program.shipped else None  # the real bytes are pickled at submit
    objects = build_objects(identity, spec, program.source, opts, shipped)
    out = ["# ---------------- Kubernetes: what would be created ----------------",
           f"# launcher {opts.launcher}, namespace {namespace}"
           + ("" if opts.namespace else " (none given: the kubeconfig context's namespace "
              "is used at submit)"),
           f"# names end in the job id, here {PLACEHOLDER_ID}; uids are the API server's"]
    if opts.launcher == "pods":
        out.append("# TF_CONFIG per replica (stable DNS names of the headless Service):")
        configs = tf_configs(spec, manifests.replica_addresses(identity, spec))
        out += [f"{replica.label}: {config}" for replica, config in configs.items()]
    else:
        out.append("# TF_CONFIG: set in every pod by the Kubeflow training operator")
    out.append(to_yaml([_summarised(obj) for obj in objects]))
    return "\n".join(out)


def build_objects(identity: JobIdentity, spec: JobSpec, program_source: str,
                  options: KubernetesOptions, shipped: bytes | None) -> list[dict[str, Any]]:
    """The launch's objects in creation order, owners given a placeholder uid."""
    with_shipped = shipped is not None
    if options.launcher == "tfjob":
        owner = _with_uid(manifests.tfjob(identity, spec, options, with_shipped=with_shipped))
        return [owner, manifests.config_map(identity, program_source, shipped, owner=owner)]
    owner = _with_uid(manifests.config_map(identity, program_source, shipped))
    return ([owner, manifests.headless_service(identity, owner)]
            + manifests.pods(identity, spec, options, owner, with_shipped=with_shipped))


def _with_uid(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["uid"] = PLACEHOLDER_UID
    return obj


def _summarised(obj: dict[str, Any]) -> dict[str, Any]:
    """A ConfigMap with its data values replaced by one line each (sizes), uid dropped
    from owners (the API server sets it; it is not part of what is sent)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("uid", None)
    if obj["kind"] == "ConfigMap":
        obj["data"] = {key: _describe(key, value) for key, value in obj["data"].items()}
        if "binaryData" in obj:
            obj["binaryData"] = dict.fromkeys(obj["binaryData"], "<the --ship values, pickled at submit>")
    return obj


def _describe(key: str, value: str) -> str:
    size = f"{len(value.encode())} bytes"
    if key == manifests.PROGRAM_KEY:
        return f"<{size}: program.py, shown above>"
    if key == manifests.BOOTSTRAP_KEY:
        return f"<{size}: cellship's pod bootstrap>"
    return f"<{size}: cellship shim module>"


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Objects as one multi-document YAML stream (``kubectl apply -f`` reads it)."""
    import yaml  # PyYAML: a dependency of papermill, so always installed with cellship

    return "\n".join("---\n" + yaml.safe_dump(obj, sort_keys=False).rstrip("\n")
                     for obj in objects)
