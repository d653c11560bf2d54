"""``cellship jobs --backend kubernetes``: the cluster's cellship jobs, merged with this
machine's job store.

Why both: a job submitted from another kernel, machine or colleague exists only in the
cluster (found by its labels, :meth:`KubernetesBackend.discover`); a job submitted here
has a richer record (true name, replicas, timings). Where the ids match the store's record
wins; the others are marked ``(cluster)``. Store records of the kubernetes backend whose
objects are gone (cancelled, deleted) are still listed when they lived in the namespaces
looked at.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from cellship.kube.errors import KubernetesError
from cellship.train.kubernetes.pods import parse_time

if TYPE_CHECKING:
    from cellship.store import JobRecord, Store
    from cellship.train.kubernetes.backend import KubernetesBackend

CLUSTER_MARK = "(cluster)"


def _launch_state(record: "JobRecord") -> dict[str, Any]:
    """A stored job's launch state (``kubernetes.json``), empty before its launch."""
    try:
        state = json.loads((Path(record.job_dir) / "kubernetes.json").read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _record_namespace(record: "JobRecord") -> str | None:
    """Where a stored job's objects live: its launch state, else its spec's options."""
    return _launch_state(record).get("namespace") or (
        record.spec.get("kubernetes") or {}).get("namespace")


def cluster_jobs(backend: "KubernetesBackend", namespace: str | None = None,
                 context: str | None = None, all_namespaces: bool = False,
                 store: "Store | None" = None) -> list[dict[str, Any]]:
    """One dict per job, newest first: id, name, namespace, status, pods, created
    (epoch seconds), known (in this machine's store), launcher, user."""
    store = store or backend.store
    found = backend.discover(namespace=namespace, context=context, all_namespaces=all_namespaces)
    scope = None if all_namespaces else backend.search_namespace(namespace, context)
    records = {r.id: r for r in store.list_jobs(backend=backend.name)}
    rows: list[dict[str, Any]] = []
    for entry in found:
        record = records.pop(entry["id"], None)
        row = dict(entry) | {"created": parse_time(entry["created"]), "known": record is not None}
        if record is not None:
            record = _refreshed(backend, record)
            row |= {"name": record.name, "status": record.status, "created": record.created}
        rows.append(row)
    for record in records.values():
        where = _record_namespace(record)
        if scope is not None and where != scope:
            continue
        rows.append({"id": record.id, "name": record.name, "namespace": where,
                     "status": record.status, "pods": {}, "nodes": {}, "created": record.created,
                     "known": True, "launcher": None, "object": None,
                     "user": _launch_state(record).get("user")})
    return sorted(rows, key=lambda r: r["created"] or 0.0, reverse=True)


def _refreshed(backend: "KubernetesBackend", record: "JobRecord") -> "JobRecord":
    """The record reconciled with the cluster; as stored when the cluster will not say."""
    try:
        return backend.refresh(record)
    except KubernetesError:
        return record


def pods_summary(pods: Mapping[str, str]) -> str:
    """``{"worker-0": "Running", "worker-1": "Running", "ps-0": "Pending"}`` ->
    ``2 Running, 1 Pending``."""
    if not pods:
        return "-"
    counts: dict[str, int] = {}
    for phase in pods.values():
        counts[phase] = counts.get(phase, 0) + 1
    return ", ".join(f"{n} {phase}" for phase, n in counts.items())


def cluster_jobs_table(rows: list[dict[str, Any]], scope: str) -> str:
    """The text table; ``scope`` says where was looked ("namespace ml", "all namespaces")."""
    if not rows:
        return f"no cellship jobs in {scope}"
    table = [("ID", "NAME", "NAMESPACE", "USER", "STATUS", "PODS", "CREATED")]
    for row in rows:
        created = "-" if row["created"] is None else time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(row["created"]))
        name = row["name"] if row["known"] else f"{row['name']} {CLUSTER_MARK}"
        table.append((row["id"], name, row["namespace"] or "-", row.get("user") or "-",
                      row["status"] or "-",
                      pods_summary(row["pods"]), created))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    if any(not r["known"] for r in rows):
        lines.append(f"{CLUSTER_MARK}: submitted from another kernel or machine; not in this "
                     "machine's job store")
    return "\n".join(lines)


def json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for ``--json``: times as UTC ISO 8601 like ``cellship status --json``."""
    def iso(ts: float | None) -> str | None:
        if ts is None:
            return None
        return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")

    return [dict(row) | {"created": iso(row["created"])} for row in rows]
