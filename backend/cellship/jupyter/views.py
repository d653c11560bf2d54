"""What the REST API returns: plain JSON-ready dicts built from store records.

One place decides the wire shape (and ``openapi.yaml`` writes it down), so handlers stay
one-liners and the list endpoint stays cheap: a job summary reads nothing but the record
(no event files, no directory walks), which is what keeps 1,000 jobs under 100 ms.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Iterable

from cellship.store import BatchRecord, JobRecord, ReplicaRecord, Store
from cellship.train.api import Job
from cellship.watch.metrics import MetricsBuffer


def iso(ts: float | None) -> str | None:
    """UTC ISO-8601 with milliseconds (the panel computes live durations from it)."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="milliseconds")


def replica_key(replica: ReplicaRecord) -> str:
    """The file-name-safe identity of a replica (``worker-1``): its log file's stem."""
    return f"{replica.type}-{replica.index}"


def _replica(replica: ReplicaRecord) -> dict[str, Any]:
    return {"key": replica_key(replica), "label": replica.label, "type": replica.type,
            "index": replica.index, "state": replica.state, "exit_code": replica.exit_code,
            "pid": replica.pid, "restarts": replica.restarts, "address": replica.address,
            "pod": replica.pod, "node": replica.node, "reason": replica.reason,
            "diagnosis": replica.diagnosis}


def job_summary(record: JobRecord, user: str | None) -> dict[str, Any]:
    """One row of the jobs list; ``user`` is who submitted it (:meth:`Backend.user`)."""
    spec = record.spec
    return {
        "id": record.id, "name": record.name, "status": record.status,
        "backend": record.backend, "user": user, "strategy": spec.get("strategy"),
        "workers": spec.get("workers"), "ps": spec.get("ps") or 0, "gpus": spec.get("gpus") or 0,
        "replicas": [{"key": replica_key(r), "label": r.label, "state": r.state, "node": r.node}
                     for r in record.replicas],
        "created": iso(record.created), "started": iso(record.started),
        "ended": iso(record.ended), "duration": record.duration, "error": record.error,
        "detached": record.detached, "restarts": record.restarts,
        "batch_run": spec.get("batch_run"),
    }


def relative_to_root(path: str | Path, root: str | Path | None) -> str | None:
    """``path`` as a path of the Jupyter file browser (relative to the contents root, with
    ``/``), or None when it lies outside the root (the browser cannot show it)."""
    if not root:
        return None
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
    except ValueError:
        return None
    return rel.as_posix() if str(rel) != "." else ""


def job_detail(job: Job, root_dir: str | None, store: Store) -> dict[str, Any]:
    """Everything the detail view shows: ``cellship status --json`` plus per-replica state
    with keys, the event history, and where the file browser can open the output."""
    data = job.to_dict()
    record = job.record
    data.update(job_summary(record, data["user"]))
    data["replicas"] = [_replica(r) for r in record.replicas]
    data["created"], data["started"], data["ended"] = (iso(record.created), iso(record.started),
                                                      iso(record.ended))
    data["events"] = [{"time": iso(ts), "kind": kind, "message": message}
                      for ts, kind, message in store.events(record.id)]
    data["output_path"] = relative_to_root(record.output_dir, root_dir)
    data["job_path"] = relative_to_root(record.job_dir, root_dir)
    return data


def metric_series(buffer: MetricsBuffer, max_points: int) -> list[dict[str, Any]]:
    """Every curve (run, tag) with its points, thinned to at most ``max_points`` (evenly,
    always keeping the last): enough for a sparkline, bounded for a long job."""
    out = []
    for run in buffer.runs():
        for tag in buffer.tags():
            steps, values = buffer.series(run, tag)
            if not len(steps):
                continue
            if len(steps) > max_points:
                picks = sorted({round(i * (len(steps) - 1) / (max_points - 1))
                                for i in range(max_points)})
                steps, values = steps[picks], values[picks]
            out.append({"run": run, "tag": tag, "steps": [int(s) for s in steps],
                        "values": [_finite(v) for v in values], "last": _finite(values[-1])})
    return out


def _finite(value: float) -> float | None:
    """JSON has no NaN/Infinity: a diverged loss becomes null (a gap in the sparkline)."""
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _counts(statuses: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def batch_summary(record: BatchRecord) -> dict[str, Any]:
    return {
        "id": record.id, "name": record.name, "notebook": record.notebook,
        "status": record.status, "backend": record.backend, "parallel": record.parallel,
        "runs": len(record.runs), "run_statuses": _counts(r.status for r in record.runs),
        "created": iso(record.created), "started": iso(record.started),
        "ended": iso(record.ended), "error": record.error,
    }


def batch_detail(record: BatchRecord, rows: list[dict[str, Any]], root_dir: str | None) -> dict[str, Any]:
    data = batch_summary(record)
    data["output_path"] = relative_to_root(record.output_dir, root_dir)
    data["rows"] = [_json_row(row) for row in rows]
    return data


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A results row with every value JSON can carry (parameters may be any literal)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float):
            out[key] = _finite(value)
        elif value is None or isinstance(value, (str, int, bool, list, dict)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def model_version(version: Any, root_dir: str | None) -> dict[str, Any]:
    """One stored model version (cellship.serve.export.ModelVersion) as the Models tab lists it."""
    manifest = version.manifest
    return {"name": version.name, "version": version.version, "path": str(version.path),
            "file_path": relative_to_root(version.path, root_dir),
            "created": manifest.get("created"), "source": version.describe_source(),
            "signature": version.describe_signature(),
            "metrics": {k: _finite(v) for k, v in (manifest.get("metrics") or {}).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)}}
