"""What a job's pods say, read from the API's pod dicts: the program's phase, run times,
replica names, a job's status summed up from its pods, the GPU shortfall behind a pod that
cannot be scheduled.

Pure readers (only :func:`with_gpu_shortfall` asks the API, for the nodes and what they
have free): the backend's refresh, end and listing decide what to do with the answers.
Pods are keyed like our own (``LABEL_REPLICA_TYPE``/``-INDEX``) whether cellship or the
TFJob operator made them.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterable, Mapping

from cellship.kube.api import KubeAPI
from cellship.kube.diagnose import Diagnosis, resource_free, shortfall
from cellship.kube.errors import KubernetesError
from cellship.kube.podspec import CONTAINER, GPU_RESOURCE
from cellship.train.kubernetes import manifests
from cellship.train.spec import JobSpec

TFJOB_REPLICA_TYPE = "training.kubeflow.org/replica-type"
TFJOB_REPLICA_INDEX = "training.kubeflow.org/replica-index"


def container_status(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == name:
            return status
    return {}


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 time of the API (``2026-11-25T15:00:00Z``) -> seconds since the epoch."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def program_phase(pod: Mapping[str, Any]) -> str:
    """The pod's phase as far as the program goes: a chief pod whose program has ended
    stays Running while its keeper waits for the fetch, so its program's container
    decides (exit 0: Succeeded; a failure it will not restart from: Failed)."""
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if phase != "Running":
        return phase
    terminated = (container_status(pod, CONTAINER).get("state") or {}).get("terminated")
    if not terminated:
        return phase
    if terminated.get("exitCode") == 0:
        return "Succeeded"
    if (pod.get("spec") or {}).get("restartPolicy") == "Never":
        return "Failed"
    return phase


def with_phase(pod: dict[str, Any], phase: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    if status.get("phase", "Pending") == phase:
        return pod
    return pod | {"status": status | {"phase": phase}}


def run_times(pods: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(first start, last end) of the programs' containers, from the kubelet's clock."""
    starts: list[float] = []
    ends: list[float] = []
    for pod in pods:
        state = container_status(pod, CONTAINER).get("state") or {}
        for key in ("running", "terminated"):
            begun = parse_time((state.get(key) or {}).get("startedAt"))
            if begun is not None:
                starts.append(begun)
        ended = parse_time((state.get("terminated") or {}).get("finishedAt"))
        if ended is not None:
            ends.append(ended)
    return (min(starts) if starts else None), (max(ends) if ends else None)


def with_gpu_shortfall(client: KubeAPI, spec: JobSpec, pods: list[dict[str, Any]],
                       problems: list[Diagnosis]) -> list[Diagnosis]:
    """A pod that waits for GPUs says only "Insufficient nvidia.com/gpu"; the job's whole
    need against what the cluster has free says more ("needs 3, 2 free"). Counting what is
    free reads the nodes and every namespace's pods: a user who may not gets the pod's
    own diagnosis only."""
    if not spec.gpus or not any(p.reason == "Unschedulable" and GPU_RESOURCE in p.message
                                for p in problems):
        return problems
    needed = spec.gpus * sum(1 for r in spec.replicas() if r.type != "ps")
    try:
        nodes = client.list("Node", None)
        everyone = client.list("Pod", None)
    except KubernetesError:
        return problems
    own = [(p["metadata"].get("namespace"), p["metadata"]["name"]) for p in pods]
    free, total = resource_free(GPU_RESOURCE, nodes, everyone, own)
    if free >= needed:
        return problems
    # First the job's sum, then the pods' own words (the scheduler's event text).
    return [Diagnosis("Unschedulable", shortfall(GPU_RESOURCE, needed, free, total),
                      fatal=False), *problems]


def tfjob_pods(pods: dict[tuple[Any, Any], Any]) -> dict[tuple[Any, Any], Any]:
    """The TFJob operator labels pods ``training.kubeflow.org/replica-type/-index``
    (lower case) and copies our template labels; key them like our own pods."""
    out = {}
    for pod in pods.values():
        labels = pod["metadata"].get("labels", {})
        rtype = labels.get(TFJOB_REPLICA_TYPE) or labels.get(manifests.LABEL_REPLICA_TYPE)
        index = labels.get(TFJOB_REPLICA_INDEX)
        out[(str(rtype).lower(), index)] = pod
    return out


def replica_key(pod: dict[str, Any]) -> str:
    """``worker-1``: from our labels, or the TFJob operator's, else the pod's name."""
    labels = pod["metadata"].get("labels") or {}
    rtype = labels.get(manifests.LABEL_REPLICA_TYPE) or labels.get(TFJOB_REPLICA_TYPE)
    index = labels.get(manifests.LABEL_REPLICA_INDEX) or labels.get(TFJOB_REPLICA_INDEX)
    if rtype is None or index is None:
        return pod["metadata"]["name"]
    return f"{str(rtype).lower()}-{index}"


def pods_status(phases: Iterable[str]) -> str:
    """A job's status summed up from its pods' phases (cellship ends a job by stopping
    the pods still running, so what is left tells how it ended)."""
    phases = list(phases)
    if not phases:
        return "unknown"
    if "Failed" in phases:
        return "failed"
    if "Running" in phases:
        return "running"
    if all(p == "Succeeded" for p in phases):
        return "succeeded"
    return "pending"
