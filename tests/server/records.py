"""Realistic job records written straight into a store (no processes): what the REST
tests and benchmarks/panel_list.py list, page and stream."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from cellship.store import JobRecord, ReplicaRecord, Store
from cellship.train.spec import JobSpec

STATES = {"succeeded": "exited", "failed": "failed", "cancelled": "killed", "running": "running",
          "pending": "pending"}


def fake_job(store: Store, home: Path, *, name: str = "train", status: str = "succeeded",
             workers: int = 1, created: float | None = None, duration: float = 12.5,
             logs: dict[str, str] | None = None, error: str | None = None) -> JobRecord:
    """Record a job as the local backend would have, with its directory and log files
    (``logs``: replica key -> text), in ``status``."""
    job_id = secrets.token_hex(4)
    job_dir = home / "jobs" / job_id
    (job_dir / "logs").mkdir(parents=True)
    (job_dir / "output").mkdir()
    (job_dir / "tensorboard").mkdir()
    spec = JobSpec(workers=workers)
    # The record's name is written as given: the spec validates names at submission, but a
    # store may hold anything (older versions, other backends), and the panel must cope.
    spec_data = spec.to_dict() | {"cwd": str(home), "name": name}
    (job_dir / "spec.json").write_text(json.dumps(spec_data))
    (job_dir / "program.py").write_text("print('hello')\n")
    created = time.time() if created is None else created
    replicas = tuple(
        ReplicaRecord(job_id=job_id, type=r.type, index=r.index, state="pending",
                      exit_code=None, pid=None, restarts=0,
                      log_path=str(job_dir / "logs" / f"{r.key}.log"), address=None)
        for r in spec.replicas())
    for replica in replicas:
        key = f"{replica.type}-{replica.index}"
        Path(replica.log_path).write_text((logs or {}).get(key, ""))
    record = JobRecord(id=job_id, name=name, status="pending", backend="local", spec=spec_data,
                       job_dir=str(job_dir), output_dir=str(job_dir / "output"),
                       logdir=str(job_dir / "tensorboard"), created=created, replicas=replicas)
    store.create_job(record)
    if status != "pending":
        if status in ("running", "succeeded", "failed"):
            store.transition(job_id, "running", started=created + 0.5)
        if status != "running":
            store.transition(job_id, status, ended=created + 0.5 + duration,
                             error=error or (None if status == "succeeded" else f"job {status}"))
        for replica in replicas:
            store.update_replica(job_id, replica.type, replica.index, state=STATES[status],
                                 exit_code=0 if status == "succeeded" else None)
    return store.get_job(job_id)
