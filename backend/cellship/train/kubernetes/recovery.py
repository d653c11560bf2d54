"""Replicas that lost their pod: noticed, the pod made again, every restart told.

A cluster job's replicas are bare pods (see :mod:`.manifests` for why), and Kubernetes
never recreates a bare pod: one deleted (``kubectl delete pod``, a drain), evicted by its
node (disk or memory pressure, a scratch volume over its limit) or stranded on a node
that stopped answering is gone for good, where the local backend's supervisor would have
restarted it. So cellship does what a controller would, each time it looks at the job
(:meth:`KubernetesBackend.refresh`): a pod stuck deleting past its grace period on a dead
node is removed at once (as ``kubectl delete --force`` would), an evicted one too, and a
missing one is created again from the same manifest (same name, so the same DNS name and
TF_CONFIG), on whichever node the scheduler picks, within the replica's ``--max-restarts``
budget. Restarts in place (the kubelet's, ``restartPolicy: OnFailure``) count against the
same budget; both become job events, which the cell's log shows as they happen.

A recreated pod starts with an empty job dir; ``cellship.job.backup()`` resumes it from its
peers' copy (:mod:`cellship.inside.backups`). The counts survive in the job's launch state
(``kubernetes.json``): ``carried`` is, per replica, the restarts of its earlier pods.

Cellship must be looking (a kernel following the job, ``cellship status``, the panel): a
detached job nobody looks at is not recovered until someone does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cellship.kube.api import KubeAPI
from cellship.kube.diagnose import memory_limit
from cellship.kube.errors import KubernetesError, KubernetesNotFound
from cellship.kube.options import KubernetesOptions
from cellship.kube.podspec import CONTAINER
from cellship.store import JobRecord, Store
from cellship.train.kubernetes import manifests
from cellship.train.kubernetes.manifests import JobIdentity
from cellship.train.kubernetes.pods import container_status, parse_time
from cellship.train.spec import JobSpec, Replica

# A pod whose deletion is this much past its grace period sits on a node that no longer
# answers (a live kubelet kills what is left at the period's end and confirms at once;
# the program itself ends on SIGTERM: cellship/inside/bootstrap.py).
OVERDUE_SECONDS = 10.0
EVENT_KIND = "recovery"


@dataclass(frozen=True)
class Loss:
    """A replica's pod that will not run its program again, and why, in words."""

    why: str
    remove: bool  # the pod object is still there and must be removed first


def loss(pod: Mapping[str, Any] | None, now: float) -> Loss | None:
    """Why this replica needs a new pod, or None while its pod may still run it."""
    if pod is None:
        return Loss("its pod was deleted", remove=False)
    status = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName") or "its node"
    if status.get("phase") == "Failed" and status.get("reason") == "Evicted":
        message = (status.get("message") or "").strip().rstrip(".")
        return Loss(f"node {node} evicted its pod" + (f" ({message})" if message else ""),
                    remove=True)
    deleting = parse_time((pod.get("metadata") or {}).get("deletionTimestamp"))
    if deleting is not None and now > deleting + OVERDUE_SECONDS:
        return Loss(f"node {node} stopped answering (its pod, deleted, outlived its grace "
                    "period there)", remove=True)
    return None


def is_going(pod: Mapping[str, Any] | None) -> bool:
    """A pod being deleted: its replica is judged once it is gone."""
    return pod is not None and bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def carried(state: Mapping[str, Any], replica: Replica) -> int:
    return int((state.get("carried") or {}).get(replica.label, 0))


def _save_state(job_dir: str, state: dict[str, Any]) -> None:
    path = Path(job_dir) / "kubernetes.json"
    staging = path.with_suffix(".json.part")
    staging.write_text(json.dumps(state, indent=2))
    staging.replace(path)


def _restarts_seen(record: JobRecord, replica: Replica) -> int:
    """The replica's restarts as the store had them before this look."""
    return next((r.restarts for r in record.replicas
                 if (r.type, r.index) == (replica.type, replica.index)), 0)


def restart_words(pod: Mapping[str, Any]) -> str:
    """How the program's container last ended, for the event of a restart in place."""
    last = (container_status(pod, CONTAINER).get("lastState") or {}).get("terminated") or {}
    reason, code = last.get("reason"), last.get("exitCode")
    if reason == "OOMKilled":
        limit = memory_limit(pod)
        return "it was killed for going over its memory limit" + (f" ({limit})" if limit else "")
    if code == 137:
        return "it was killed (SIGKILL, exit code 137)"
    if code is not None:
        return f"it exited with code {code}"
    return "its container ended"


def note_restarts(store: Store, record: JobRecord, replica: Replica, pod: Mapping[str, Any],
                  total: int, budget: int) -> None:
    """A job event for each restart in place the store has not seen yet."""
    seen = _restarts_seen(record, replica)
    if total > seen:
        store.add_event(record.id, EVENT_KIND,
                        f"{replica.label} restarted in place ({restart_words(pod)}): "
                        f"restart {total} of {budget}")


def replace(store: Store, record: JobRecord, state: dict[str, Any], client: KubeAPI,
            identity: JobIdentity, spec: JobSpec, replica: Replica,
            pod: Mapping[str, Any] | None, lost: Loss) -> str | None:
    """Remove a lost pod and/or create it again; None when done or under way, else the
    sentence the job fails with (the budget is spent, or the pod cannot be made)."""
    seen = _restarts_seen(record, replica)
    if seen + 1 > spec.max_restarts:
        return (f"{replica.label} was lost: {lost.why}, and its --max-restarts "
                f"{spec.max_restarts} {'is used up' if spec.max_restarts else 'allows no restart'}.")
    if pod is not None and lost.remove:
        try:
            client.delete("Pod", identity.namespace, pod["metadata"]["name"],
                          propagation="Background", grace_seconds=0)
        except KubernetesNotFound:
            pass
        state.setdefault("lost", {})[replica.label] = lost.why
        _save_state(record.job_dir, state)
        return None  # made again once it is gone (the name must be free)
    try:
        owner = client.get("ConfigMap", identity.namespace, identity.prefix)
    except KubernetesNotFound:
        return None  # the job is being deleted (cancel): nothing to recover
    if (owner.get("metadata") or {}).get("deletionTimestamp"):
        return None
    why = (state.get("lost") or {}).pop(replica.label, None) or lost.why
    options = KubernetesOptions.from_dict(state["options"])
    shipped = (Path(record.job_dir) / "shipped.pkl").exists()
    body = next(p for p in manifests.pods(identity, spec, options, owner, with_shipped=shipped)
                if p["metadata"]["name"] == identity.pod(replica))
    try:
        client.create(body)
    except KubernetesError as err:
        if err.status == 409:  # the old one is still being removed: next look
            return None
        return f"{replica.label} was lost ({why}) and could not be made again: {err}"
    state.setdefault("carried", {})[replica.label] = seen + 1
    _save_state(record.job_dir, state)
    store.update_replica(record.id, replica.type, replica.index, restarts=seen + 1,
                         state="pending", pod=identity.pod(replica), node=None)
    store.add_event(record.id, EVENT_KIND,
                    f"{replica.label} was lost ({why}); cellship made its pod again, to run "
                    f"on any ready node: restart {seen + 1} of {spec.max_restarts}")
    return None
