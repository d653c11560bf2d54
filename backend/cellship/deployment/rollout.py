"""Waiting for a served model to be up (or gone), and saying why it is not.

"Up" is ``kubectl rollout status``'s rule: the controller has seen the newest spec
(``observedGeneration``), every replica runs the new template (``updatedReplicas``), no old
replica is left, and all are available (ready for ``minReadySeconds``). For an
InferenceService it is the ``Ready`` condition KServe sets.

While waiting, pods that are not ready are diagnosed with :func:`cellship.kube.diagnose`
(with their events): a fatal diagnosis (image never pullable, crash loop, OOM, bad config)
ends the wait at once, so a broken deploy fails in seconds instead of at the timeout. An
image that still cannot be pulled after ``stuck_after`` seconds counts as fatal too (a wrong
tag does not fix itself), and so does a server that keeps answering 404 for the model
(a wrong model name); an unschedulable pod does not (an autoscaler may add a node), it
is reported when the timeout passes.

The wait follows the target with a watch (:func:`cellship.kube.waiting.observe`): it looks
as soon as the controller updates the Deployment's (or KServe's) status, and at least every
``poll`` seconds for what no status update carries (pods' problems, the clocks above).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from cellship.deployment.errors import DeployFailed, DeployTimeout
from cellship.kube.api import KubeAPI
from cellship.kube.diagnose import Diagnosis, diagnose
from cellship.kube.errors import KubernetesError, KubernetesNotFound
from cellship.kube.waiting import observe

STUCK = ("ImagePull", "NotServing")  # not fatal at once, but they do not fix themselves
Clock = Callable[[], float]


@dataclass(frozen=True)
class Target:
    """What to wait for: a Deployment or an InferenceService and how to find its pods."""

    kind: str
    namespace: str
    name: str
    replicas: int
    pod_selector: str


@dataclass(frozen=True)
class State:
    """One look at the target: ``ready`` of ``desired`` replicas, ``done`` when the
    rollout is complete; ``blocker`` a controller-level reason it cannot go on."""

    ready: int
    desired: int
    done: bool
    waiting_for: str = ""
    blocker: str | None = None


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def deployment_state(dep: Mapping[str, Any]) -> State:
    """``kubectl rollout status`` for one apps/v1 Deployment as the API returned it."""
    spec, status = dep.get("spec", {}), dep.get("status") or {}
    desired = int(spec.get("replicas", 1))
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    failure = _condition(dep, "ReplicaFailure")
    if failure.get("status") == "True":
        return State(ready, desired, False, blocker=f"it cannot create pods: "
                     f"{failure.get('message') or failure.get('reason')}")
    progressing = _condition(dep, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return State(ready, desired, False, blocker=f"the rollout made no progress: "
                     f"{progressing.get('message', '')}")
    generation = int(dep.get("metadata", {}).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return State(ready, desired, False, "the controller to see the new spec")
    if updated < desired:
        return State(ready, desired, False, f"{updated} of {desired} replicas to be updated")
    if total > updated:
        return State(ready, desired, False, f"{total - updated} old replica(s) to stop")
    if available < desired:
        return State(ready, desired, False, f"{available} of {desired} replicas available")
    return State(available, desired, True)


def inference_service_state(isvc: Mapping[str, Any], ready_pods: int, desired: int) -> State:
    """KServe's ``Ready`` condition; the ready count comes from the predictor's pods."""
    cond = _condition(isvc, "Ready")
    if cond.get("status") == "True":
        return State(max(ready_pods, desired), desired, True)
    why = cond.get("message") or cond.get("reason") or "KServe to report Ready"
    return State(ready_pods, desired, False, why)


def is_ready(pod: Mapping[str, Any]) -> bool:
    return _condition(pod, "Ready").get("status") == "True"


def _events(client: KubeAPI, namespace: str, pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Events explain a stuck pod; who may not list events still gets a diagnosis."""
    try:
        return client.events("Pod", namespace, pod["metadata"]["name"])
    except KubernetesError:
        return []


def live_pods(client: KubeAPI, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The target's pods that are not being deleted."""
    return [p for p in client.list("Pod", namespace, selector)
            if not p.get("metadata", {}).get("deletionTimestamp")]


def problems(client: KubeAPI, namespace: str,
             pods: Sequence[Mapping[str, Any]]) -> list[tuple[str, Diagnosis]]:
    """(pod name, diagnosis) of the pods that are not ready (a ready pod's past restarts
    are history)."""
    found = []
    for pod in pods:
        if is_ready(pod):
            continue
        events = _events(client, namespace, pod)
        diagnosis = diagnose(pod, events, max_restarts=0) or _not_serving(pod, events)
        if diagnosis is not None:
            found.append((pod["metadata"]["name"], _reworded(diagnosis, pod, namespace)))
    return found


def _not_serving(pod: Mapping[str, Any],
                 events: Sequence[Mapping[str, Any]]) -> Diagnosis | None:
    """A running server whose readiness probe gets 404: it serves no model of that name
    (the usual cause: a wrong --model-name). 503 (still loading) is not a problem."""
    if pod.get("status", {}).get("phase") != "Running":
        return None
    for event in reversed(events):
        message = event.get("message") or ""
        if event.get("reason") == "Unhealthy" and "Readiness" in message and "404" in message:
            containers = pod.get("spec", {}).get("containers") or [{}]
            path = ((containers[0].get("readinessProbe") or {}).get("httpGet") or {}).get("path", "")
            return Diagnosis("NotServing", (
                f"{pod['metadata']['name']} runs, but its server answers 404 for {path}: it "
                "serves no model of that name. Give the name the image serves with "
                "--model-name (a `cellship build` image serves the model's name; TF Serving "
                f"images serve $MODEL_NAME). (Kubernetes says: {message})"), fatal=False)
    return None


def _reworded(diagnosis: Diagnosis, pod: Mapping[str, Any], namespace: str) -> Diagnosis:
    """The training-oriented sentences of :mod:`diagnose`, made right for a served model."""
    name = pod.get("metadata", {}).get("name", "pod")
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    waiting = (statuses[0].get("state") or {}).get("waiting") or {}
    message = diagnosis.message.replace("see its log with `cellship logs`",
                                        f"see its log with `kubectl logs -n {namespace} {name} "
                                        "--previous`")
    if waiting.get("reason") == "ErrImageNeverPull":
        image = ((pod.get("spec", {}).get("containers") or [{}])[0]).get("image", "")
        message = (f"ErrImageNeverPull: the image {image!r} is not on the node and the image "
                   "pull policy is Never, so Kubernetes will not fetch it. Load it into the "
                   "node's container runtime (e.g. `ctr -n k8s.io images import`), or push it "
                   "to a registry the nodes can reach and deploy with --image-pull-policy "
                   f"IfNotPresent. ({diagnosis.message})")
    return Diagnosis(diagnosis.reason, message, diagnosis.fatal)


def failed_message(target: Target, why: str) -> str:
    return (f"The model server {target.name} in namespace {target.namespace} cannot start: "
            f"{why} The {target.kind} is left in place so you can look (`kubectl describe "
            f"pods -n {target.namespace} -l {target.pod_selector}`); fix the cause and deploy "
            f"again (that updates it), or remove it with `cellship undeploy {target.name} "
            f"-n {target.namespace}`.")


def _state(target: Target, obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> State:
    if target.kind == "InferenceService":
        return inference_service_state(obj, sum(is_ready(p) for p in pods), target.replicas)
    return deployment_state(obj)


def wait_ready(client: KubeAPI, target: Target, timeout: float, *, poll: float = 1.0,
               stuck_after: float = 60.0, progress: Callable[[str], None] = lambda _m: None,
               clock: Clock = time.monotonic) -> State:
    """Follow the target until the rollout is done (at each change of it, and at least
    every ``poll`` seconds); DeployFailed at a fatal diagnosis, DeployTimeout after
    ``timeout`` seconds (both worded for the user). Returns the final state."""
    start = clock()
    stuck_since: dict[str, float] = {}
    last_report = None
    latest: Diagnosis | None = None
    state = State(0, target.replicas, False, "the first look")
    for seen in observe(client, target.kind, target.namespace, name=target.name,
                        timeout=timeout, every=poll, clock=clock):
        obj = seen.get((target.namespace, target.name))
        if obj is None:
            raise KubernetesNotFound(f"{target.kind} {target.name} was deleted from namespace "
                                     f"{target.namespace} while cellship waited for it.", 404)
        pods = live_pods(client, target.namespace, target.pod_selector)
        state = _state(target, obj, pods)
        if state.done:
            return state
        if state.blocker:
            raise DeployFailed(failed_message(target, state.blocker + "."))
        now = clock()
        found = problems(client, target.namespace, pods)
        stuck_since = {pod: stuck_since.get(pod, now) for pod, d in found if d.reason in STUCK}
        for pod, diagnosis in found:
            if diagnosis.fatal:
                raise DeployFailed(failed_message(target, diagnosis.message), diagnosis)
            if diagnosis.reason in STUCK and now - stuck_since[pod] >= stuck_after:
                raise DeployFailed(failed_message(
                    target, f"{diagnosis.message} (still so after {stuck_after:g} s)"), diagnosis)
        latest = found[-1][1] if found else latest
        report = (state.ready, state.waiting_for, found[-1][1].reason if found else None)
        if report != last_report:
            line = f"{state.ready}/{state.desired} ready; waiting for {state.waiting_for}"
            if found:
                line += f" ({found[-1][1].message})"
            progress(line)
            last_report = report
        if now - start >= timeout:
            break
    why = f" Last problem seen: {latest.message}" if latest else ""
    raise DeployTimeout(
        f"{state.ready} of {state.desired} replica(s) of {target.name} were ready after "
        f"{timeout:g} s (waiting for {state.waiting_for}).{why} The rollout goes on in "
        f"the cluster: look with `cellship deployments -n {target.namespace}` or "
        f"`kubectl describe pods -n {target.namespace} -l {target.pod_selector}`, "
        f"wait longer with --timeout, or remove it with `cellship undeploy "
        f"{target.name} -n {target.namespace}`.")


def wait_pods_gone(client: KubeAPI, namespace: str, selector: str, timeout: float) -> int:
    """Wait until no pod matches ``selector`` (terminating ones included); how many are
    left when ``timeout`` passed (0: all gone)."""
    left = 0
    for pods in observe(client, "Pod", namespace, label_selector=selector, timeout=timeout):
        left = len(pods)
        if not left:
            return 0
    return left
