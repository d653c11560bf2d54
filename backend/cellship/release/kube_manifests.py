"""Pure functions: what a release to Kubernetes asks of the cluster, and what it reads back.

Nothing here talks to a cluster (:mod:`.kubernetes_target` does), so every object and every
decision is checked by unit tests. The objects are those of ``cellship deploy``
(:mod:`cellship.deployment.manifests`), with the release's labels added:

* one Deployment per version, ``<model>-v<version>``, its pods labelled
  ``cellship.io/model=<model>`` (by the deploy manifests) and
  ``cellship.io/released=<model>`` (only release-made pods: a ``cellship deploy`` of the
  same model under another name is not taken into the release's traffic); the Deployment
  itself also carries ``cellship.io/version``, ``cellship.io/release`` (the id of the
  release or rollback that made it) and ``cellship.io/track``: ``canary`` until it is
  promoted, ``stable`` from the moment the promotion commits (the one label a process that
  finishes an interrupted release trusts);
* one Service ``<model>`` (no owner: it outlives every version) selecting
  ``cellship.io/model`` + ``cellship.io/released``, so the serving and the canary
  version's ready pods share the traffic by replica ratio;
* where KServe is installed, one InferenceService ``<model>`` instead, whose newest
  revision gets KServe's ``canaryTrafficPercent``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from cellship.deployment import manifests as mf
from cellship.deployment.spec import DeploySpec
from cellship.errors import UsageError
from cellship.kube.names import is_dns_label, label_value

RELEASED = "cellship.io/released"
VERSION = "cellship.io/version"
RELEASE_ID = "cellship.io/release"
TRACK = "cellship.io/track"
CANARY, STABLE = "canary", "stable"
ANNOTATION_SIGNATURE = "cellship.io/signature"
ANNOTATION_IMAGE = "cellship.io/image"
DRAIN_SECONDS = 5  # a stopping pod keeps answering while the Service's endpoints drop it


def check_model(model: str) -> str:
    """A model released to Kubernetes names a Service and ``<model>-v<N>`` Deployments."""
    if not is_dns_label(f"{model}-v9999"):
        raise UsageError(f"Model {model!r} cannot name a Kubernetes Service and its versions' "
                         "Deployments (<model>-v<version>): releasing to Kubernetes needs a "
                         "model name of at most 57 lower-case letters, digits or '-', starting "
                         "with a letter (e.g. digits).")
    return model


def deployment_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def canary_replicas(replicas: int, percent: float) -> int:
    """The canary's pods beside a serving version of ``replicas``: ceil(replicas * percent
    / 100), at least one (a canary with no pod checks nothing) and at most ``replicas``."""
    if not 0 < percent <= 100:
        raise UsageError(f"--canary must be a percentage in (0, 100], got {percent:g}.")
    if replicas < 1:
        raise UsageError(f"--replicas must be at least 1, got {replicas}.")
    return max(1, min(replicas, math.ceil(replicas * percent / 100)))


def traffic_share(canary: int, stable: int) -> float:
    """The share of the Service's requests the canary's ready pods get."""
    return canary / (canary + stable) if canary + stable else 0.0


def pod_labels(model: str) -> dict[str, str]:
    """The Service's selector: the pods of every released version of ``model``."""
    return {mf.LABEL_MODEL: label_value(model), RELEASED: label_value(model)}


@dataclass(frozen=True)
class Version:
    """One released version as the cluster holds it (read back from its Deployment)."""

    name: str  # the Deployment's
    version: int
    release_id: str
    track: str
    replicas: int
    image: str
    signature: Mapping[str, Any]

    @property
    def stable(self) -> bool:
        return self.track == STABLE


def spec(model: str, version: int, image: str, *, namespace: str, replicas: int,
         release_id: str, signature: Mapping[str, Any], pull_policy: str | None = None,
         cpu: str | None = None, memory: str | None = None) -> DeploySpec:
    """The DeploySpec of one version (the image's own command serves the model)."""
    return DeploySpec(
        name=deployment_name(model, version), image=image, model_name=model,
        replicas=replicas, namespace=namespace, image_pull_policy=pull_policy, cpu=cpu,
        memory=memory, env={"CELLSHIP_HOME": "/tmp/cellship", "PYTHONUNBUFFERED": "1"},
        extra_labels=pod_labels(model) | {VERSION: str(version), RELEASE_ID: release_id},
        extra_annotations={ANNOTATION_SIGNATURE: json.dumps(dict(signature), sort_keys=True),
                           ANNOTATION_IMAGE: image})


def deployment(version_spec: DeploySpec, track: str = CANARY) -> dict[str, Any]:
    """The version's Deployment: the deploy manifest, its ``track`` label on the Deployment
    only (changing it later restarts no pod), and a preStop pause so that a pod being
    scaled away keeps answering until the Service no longer sends it requests."""
    body = mf.deployment(version_spec)
    body["metadata"]["labels"] = dict(body["metadata"]["labels"]) | {TRACK: track}
    for container in body["spec"]["template"]["spec"]["containers"]:
        container["lifecycle"] = {"preStop": {"exec": {"command": [
            version_spec.python, "-c", f"import time; time.sleep({DRAIN_SECONDS})"]}}}
    return body


def service(model: str, namespace: str) -> dict[str, Any]:
    """The model's Service over every released version's pods (no owner: it stays while
    versions come and go)."""
    base = DeploySpec(name=model, image="unused", model_name=model, namespace=namespace)
    return mf.service(base, None, pod_selector=pod_labels(model))


def inference_service(version_spec: DeploySpec, model: str,
                      canary_percent: int | None) -> dict[str, Any]:
    """The model's InferenceService with this version as its newest revision
    (``canary_percent`` None: it takes all the traffic)."""
    return mf.inference_service(replace(version_spec, name=model), canary_percent)


def with_track(body: Mapping[str, Any], track: str) -> dict[str, Any]:
    """A Deployment as read, relabelled ``track`` (a PUT body)."""
    out = {**body, "metadata": dict(body["metadata"])}
    out["metadata"]["labels"] = dict(out["metadata"].get("labels") or {}) | {TRACK: track}
    return out


def with_replicas(body: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """A Deployment as read, scaled to ``replicas`` (a PUT body)."""
    return {**body, "spec": {**body["spec"], "replicas": replicas}}


def version_of(dep: Mapping[str, Any]) -> Version | None:
    """A Deployment read back as a released version (None: not one the release made)."""
    meta = dep.get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    number = labels.get(VERSION, "")
    if RELEASED not in labels or not number.isdigit():
        return None
    try:
        signature = json.loads(notes.get(ANNOTATION_SIGNATURE) or "{}")
    except ValueError:
        signature = {}
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers") or [{}]
    return Version(name=meta.get("name", ""), version=int(number),
                   release_id=labels.get(RELEASE_ID, ""), track=labels.get(TRACK, CANARY),
                   replicas=int((dep.get("spec") or {}).get("replicas", 1)),
                   image=notes.get(ANNOTATION_IMAGE) or containers[0].get("image", ""),
                   signature=signature if isinstance(signature, dict) else {})


def serving(versions: Sequence[Version]) -> Version | None:
    """The version served by default: the stable one (the newest, should a crash between
    a promotion's commit and its cleanup have left two)."""
    stable = [v for v in versions if v.stable]
    return max(stable, key=lambda v: v.version) if stable else None


@dataclass(frozen=True)
class Cleanup:
    """What finishing an interrupted release does: ``promoted`` (its version had been
    committed stable), the Deployments to delete, the one left serving (None: nothing)."""

    promoted: bool
    delete: tuple[str, ...]
    keep: str | None


def finish_plan(versions: Sequence[Version], release_id: str) -> Cleanup:
    """End in one serving version: a release that had committed its promotion keeps its
    version (every other goes); one that had not loses its own Deployment, and the serving
    one stays. Versions of other releases that are not stable (a canary some other dead
    process left) go too: nothing half-released stays beside the serving version."""
    own = [v for v in versions if v.release_id == release_id]
    promoted = any(v.stable for v in own)
    keep = serving(own if promoted else [v for v in versions if v.release_id != release_id])
    delete = tuple(sorted(v.name for v in versions if keep is None or v.name != keep.name))
    return Cleanup(promoted, delete, keep.name if keep else None)


def rollback_choice(current: int, to: int | None, promoted: Mapping[int, str],
                    model: str) -> int:
    """The version a rollback serves: ``to``, or the newest promoted one before
    ``current``; ``promoted`` maps each version ever promoted to its image."""
    if to is None:
        older = [v for v in promoted if v < current]
        if not older:
            raise UsageError(f"Version {current} is the only released version of {model} with a "
                             "recorded image; there is none before it to go back to.")
        return max(older)
    if to == current:
        raise UsageError(f"Version {to} of {model} is already the one served.")
    if to not in promoted:
        known = ", ".join(map(str, sorted(promoted))) or "none"
        raise UsageError(f"Version {to} of {model} was never promoted with a recorded image "
                         f"(`cellship releases {model}`); versions that were: {known}.")
    return to
