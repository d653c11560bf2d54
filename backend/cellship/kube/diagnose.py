"""Why a pod cannot start or keeps dying, in plain words (a pure function).

Input is what the API returns as JSON (camelCase, as ``kubectl get pod -o json`` shows):
the pod and the events whose ``involvedObject`` is the pod. Output is a :class:`Diagnosis`
whose ``message`` is a sentence a notebook user can act on, with the cluster's own event
text appended, and ``fatal`` telling the backend whether waiting can still help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from cellship.kube.podspec import CONTAINER

_INSUFFICIENT_RE = re.compile(r"Insufficient ([\w./-]+)")
_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "RegistryUnavailable"}
_CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class Diagnosis:
    """``reason``: a short machine word (Unschedulable, ImagePull, CrashLoop, OOMKilled,
    ContainerConfig, Failed); ``fatal``: waiting will not fix it."""

    reason: str
    message: str
    fatal: bool


def _events_text(events: Iterable[Mapping[str, Any]], reasons: set[str] | None = None) -> str:
    """The latest distinct Warning messages (optionally of some reasons), oldest first."""
    seen: list[str] = []
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        if event.get("type", "Warning") != "Warning":
            continue
        if reasons is not None and event.get("reason") not in reasons:
            continue
        message = (event.get("message") or "").strip()
        if message and message not in seen:
            seen.append(message)
    return " | ".join(seen[-2:])


def _with_events(sentence: str, text: str) -> str:
    return f"{sentence} (Kubernetes says: {text})" if text else sentence


def _unschedulable(pod: Mapping[str, Any], events: list[Mapping[str, Any]]) -> Diagnosis | None:
    conditions = pod.get("status", {}).get("conditions") or []
    cond = next((c for c in conditions if c.get("type") == "PodScheduled"
                 and c.get("status") == "False"), None)
    event_text = _events_text(events, {"FailedScheduling"})
    if cond is None and not event_text:
        return None
    text = event_text or (cond or {}).get("message", "")
    short = list(_INSUFFICIENT_RE.findall(text))
    if short:
        what = ", ".join(f"a free {r}" for r in dict.fromkeys(short))
        sentence = (f"Pod cannot be scheduled: no node has {what} for it. Free them (other "
                    "jobs may hold them), ask for less (--gpus, cpu/memory requests), or add "
                    "nodes.")
    elif "didn't match" in text and ("selector" in text or "affinity" in text):
        sentence = ("Pod cannot be scheduled: no node matches its node selector; check the "
                    "node_selector option against `kubectl get nodes --show-labels`.")
    elif "taint" in text:
        sentence = ("Pod cannot be scheduled: every node has a taint the pod does not "
                    "tolerate; add a matching toleration (tolerations option).")
    elif "persistentvolumeclaim" in text.lower():
        sentence = ("Pod cannot be scheduled: a PersistentVolumeClaim it mounts is missing or "
                    "unbound; check the volumes option and `kubectl get pvc`.")
    else:
        sentence = "Pod cannot be scheduled yet."
    return Diagnosis("Unschedulable", _with_events(sentence, text), fatal=False)


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The program's container (by name: the kubelet sorts statuses by name, and a
    chief pod has a keeper beside it), else the first."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    named = [s for s in statuses if s.get("name") == CONTAINER]
    return named[0] if named else (statuses[0] if statuses else None)


def diagnose(pod: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = (),
             max_restarts: int = 0) -> Diagnosis | None:
    """What is wrong with ``pod``, or None while it is fine (pending normally, running,
    or succeeded)."""
    events = list(events)
    status = pod.get("status", {})
    phase = status.get("phase", "Pending")
    name = pod.get("metadata", {}).get("name", "pod")
    image = ""
    containers = pod.get("spec", {}).get("containers") or []
    if containers:
        image = containers[0].get("image", "")
    cs = _container_status(pod)
    state = (cs or {}).get("state") or {}
    last = ((cs or {}).get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    restarts = int((cs or {}).get("restartCount") or 0)

    if phase == "Pending" and cs is None:
        found = _unschedulable(pod, events)
        if found is not None:
            return found
    reason = waiting.get("reason", "")
    if reason in _PULL_REASONS:
        text = _events_text(events, {"Failed", "ErrImagePull", "InspectFailed"}) or waiting.get("message", "")
        return Diagnosis("ImagePull", _with_events(
            f"{name} cannot pull its image {image!r}: check the name and tag, that the "
            "registry is reachable from the nodes, and give credentials with "
            "image_pull_secrets if it is private.", text),
            fatal=reason in {"InvalidImageName", "ErrImageNeverPull"})
    if reason in _CONFIG_REASONS:
        text = waiting.get("message", "") or _events_text(events, {"Failed"})
        return Diagnosis("ContainerConfig", _with_events(
            f"{name} cannot create its container: a Secret, ConfigMap or volume it needs is "
            "missing, or the image's user is root while cellship requires non-root "
            "(set run_as_user, or use an image with a non-root USER).", text), fatal=True)
    # The budget is spent once the container has ended (or waits to restart) after its
    # last allowed restart: the kubelet would restart it once more.
    used_up = restarts > max_restarts or (restarts == max_restarts and bool(
        terminated or reason == "CrashLoopBackOff"))
    oom = terminated if terminated.get("reason") == "OOMKilled" else (
        last if last.get("reason") == "OOMKilled" else None)
    if oom is not None and (phase == "Failed" or used_up):
        limit = memory_limit(pod)
        within = f", limit {limit}" if limit else ""
        return Diagnosis("OOMKilled",
                         f"{name} was killed for running out of memory (OOMKilled{within}, exit code "
                         f"{oom.get('exitCode', 137)}): raise --memory-limit (and --memory), "
                         "or use a smaller batch size.", fatal=True)
    if reason == "CrashLoopBackOff" or (restarts > max_restarts and last):
        code = last.get("exitCode")
        detail = last.get("message") or last.get("reason") or ""
        return Diagnosis("CrashLoop", _with_events(
            f"{name} keeps crashing: restarted {restarts} time(s), last exit code {code}"
            + (f" ({detail})" if detail else "")
            + "; see its log with `cellship logs`.", waiting.get("message", "")),
            fatal=used_up)
    if phase == "Failed":
        code = terminated.get("exitCode")
        why = status.get("message") or terminated.get("message") or terminated.get("reason") or ""
        return Diagnosis("Failed", f"{name} failed"
                         + (f" with exit code {code}" if code is not None else "")
                         + (f": {why}" if why else "") + "; see its log with `cellship logs`.",
                         fatal=True)
    return None


def memory_limit(pod: Mapping[str, Any]) -> str | None:
    """The first container's memory limit as written in the pod spec (e.g. ``128Mi``)."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return ((containers[0].get("resources") or {}).get("limits") or {}).get("memory")


def _quantity(value: Any) -> int:
    """An extended resource's quantity (whole numbers: ``"2"``); anything else counts 0."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _pod_request(pod: Mapping[str, Any], resource: str) -> int:
    """What a pod asks of ``resource`` (extended resources: requests equal limits)."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or ():
        res = container.get("resources") or {}
        total += _quantity((res.get("requests") or {}).get(resource)
                           or (res.get("limits") or {}).get(resource))
    return total


def resource_free(resource: str, nodes: Iterable[Mapping[str, Any]],
                  pods: Iterable[Mapping[str, Any]],
                  ignore: Iterable[tuple[str, str]] = ()) -> tuple[int, int]:
    """(free, total) of ``resource`` over the schedulable nodes: allocatable minus what the
    pods bound to them and not finished ask for, leaving out the ``ignore`` pods
    ((namespace, name): the asking job's own, which hold some already)."""
    skip = set(ignore)
    names: dict[str, int] = {}
    for node in nodes:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        names[(node.get("metadata") or {}).get("name", "")] = _quantity(allocatable.get(resource))
    used = 0
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("namespace"), meta.get("name")) in skip:
            continue
        if (pod.get("spec") or {}).get("nodeName") not in names:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        used += _pod_request(pod, resource)
    total = sum(names.values())
    return max(0, total - used), total


def shortfall(resource: str, needed: int, free: int, total: int) -> str:
    """The sentence for a job that asks more of ``resource`` than the cluster has free."""
    where = (f"the cluster has {total} in all" if total else
             "no node advertises it (no device plugin, or no GPU node pool)")
    return (f"The job needs {needed} {resource}, {free} free ({where}): its pods wait "
            f"until enough are free. Ask for fewer (--workers, --gpus), free some (other "
            f"jobs hold them), or add GPU nodes.")
