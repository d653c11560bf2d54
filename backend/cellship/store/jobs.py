"""Training jobs in the store: job, replica and event records, and the status rules.

Why status moves are conditional UPDATEs: a cancel racing a finish (CLI vs supervisor,
two processes) must have exactly one winner; :meth:`JobsTable.transition` says which.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from cellship.errors import JobNotFound
from cellship.store.db import Database, escape_like

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
JOB_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")

# Which statuses a job may move to from each status. Terminal statuses are final.
_ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "pending": (),
    "running": ("pending",),
    "succeeded": ("running",),
    "failed": ("pending", "running"),
    "cancelled": ("pending", "running"),
}

_JOB_COLUMNS = frozenset({"name", "status", "started", "ended", "error", "supervisor_pid",
                          "detached", "restarts", "source"})
_REPLICA_COLUMNS = frozenset({"state", "exit_code", "pid", "restarts", "log_path", "address",
                              "pod", "node", "reason", "diagnosis"})

# chief first, then workers, then parameter servers: the order users read replicas in
_REPLICA_ORDER = "CASE type WHEN 'chief' THEN 0 WHEN 'worker' THEN 1 ELSE 2 END, idx"


@dataclass(frozen=True)
class ReplicaRecord:
    """One replica of a job as the store keeps it.

    ``pod`` and ``node`` say where a replica runs on a cluster (the Pod's name and its
    ``spec.nodeName``, None until it is scheduled); ``reason`` (a short word such as
    Unschedulable or ImagePull) and ``diagnosis`` (the plain-words sentence) say why it
    cannot start or keeps failing, and are None while it is fine. Local replicas leave
    all four None: their pid and address say where they run."""

    job_id: str
    type: str
    index: int
    state: str
    exit_code: int | None
    pid: int | None
    restarts: int
    log_path: str
    address: str | None
    pod: str | None = None
    node: str | None = None
    reason: str | None = None
    diagnosis: str | None = None

    @property
    def label(self) -> str:
        """The prefix users see in logs: ``worker 1``, ``chief``, ``ps 0``."""
        return self.type if self.type == "chief" else f"{self.type} {self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "index": self.index, "state": self.state,
                "exit_code": self.exit_code, "pid": self.pid, "restarts": self.restarts,
                "log_path": self.log_path, "address": self.address, "pod": self.pod,
                "node": self.node, "reason": self.reason, "diagnosis": self.diagnosis}


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    status: str
    backend: str
    spec: Mapping[str, Any]
    job_dir: str
    output_dir: str
    logdir: str
    created: float
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    supervisor_pid: int | None = None
    detached: bool = False
    restarts: int = 0
    source: str | None = None
    replicas: tuple[ReplicaRecord, ...] = field(default=())

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started


def _row_to_job(row: sqlite3.Row, replicas: tuple[ReplicaRecord, ...]) -> JobRecord:
    return JobRecord(
        id=row["id"], name=row["name"], status=row["status"], backend=row["backend"],
        spec=json.loads(row["spec"]), job_dir=row["job_dir"], output_dir=row["output_dir"],
        logdir=row["logdir"], created=row["created"], started=row["started"],
        ended=row["ended"], error=row["error"], supervisor_pid=row["supervisor_pid"],
        detached=bool(row["detached"]), restarts=row["restarts"], source=row["source"],
        replicas=replicas,
    )


def _row_to_replica(row: sqlite3.Row) -> ReplicaRecord:
    return ReplicaRecord(
        job_id=row["job_id"], type=row["type"], index=row["idx"], state=row["state"],
        exit_code=row["exit_code"], pid=row["pid"], restarts=row["restarts"],
        log_path=row["log_path"], address=row["address"], pod=row["pod"], node=row["node"],
        reason=row["reason"], diagnosis=row["diagnosis"],
    )


class JobsTable(Database):
    """The job half of :class:`cellship.store.Store`: jobs, their replicas and events."""

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, job: JobRecord) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO jobs (id, name, status, backend, spec, job_dir, output_dir, logdir,"
                " created, detached, source) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.name, job.status, job.backend, json.dumps(dict(job.spec)),
                 job.job_dir, job.output_dir, job.logdir, job.created, int(job.detached),
                 job.source))
            for r in job.replicas:
                db.execute(
                    "INSERT INTO replicas (job_id, type, idx, state, log_path) VALUES (?,?,?,?,?)",
                    (job.id, r.type, r.index, r.state, r.log_path))
            db.execute("INSERT INTO events (job_id, ts, kind, message) VALUES (?,?,?,?)",
                       (job.id, job.created, "created", f"job {job.name} created"))
            db.execute("COMMIT")

    def get_job(self, job_id: str) -> JobRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"No job with id {job_id!r}; `cellship jobs` lists them.")
            reps = db.execute(f"SELECT * FROM replicas WHERE job_id=? ORDER BY {_REPLICA_ORDER}",
                              (job_id,)).fetchall()
        return _row_to_job(row, tuple(_row_to_replica(r) for r in reps))

    def find_job(self, ref: str) -> JobRecord:
        """Resolve what a user typed: a full id, a unique id prefix, or a unique name."""
        ref = ref.strip()
        if not ref:
            raise JobNotFound("Give a job id or name; `cellship jobs` lists them.")
        with self._connect() as db:
            exact = db.execute("SELECT id FROM jobs WHERE id=?", (ref,)).fetchone()
            if exact:
                return self.get_job(exact["id"])
            named = db.execute("SELECT id FROM jobs WHERE name=? ORDER BY created", (ref,)).fetchall()
            escaped = escape_like(ref)
            prefixed = db.execute("SELECT id FROM jobs WHERE id LIKE ? ESCAPE '\\' ORDER BY created",
                                  (escaped + "%",)).fetchall()
        if len(named) == 1:
            return self.get_job(named[0]["id"])
        if len(named) > 1:
            ids = ", ".join(r["id"] for r in named)
            raise JobNotFound(f"{len(named)} jobs are named {ref!r} ({ids}); use the id instead.")
        if len(prefixed) == 1:
            return self.get_job(prefixed[0]["id"])
        if len(prefixed) > 1:
            ids = ", ".join(r["id"] for r in prefixed)
            raise JobNotFound(f"{ref!r} matches several job ids ({ids}); type more of the id.")
        raise JobNotFound(f"No job has the id or name {ref!r}; `cellship jobs` lists them.")

    def list_jobs(self, status: str | None = None, limit: int | None = None, *,
                  name: str | None = None, backend: str | None = None,
                  offset: int = 0) -> list[JobRecord]:
        """Jobs newest first; ``name`` matches a substring of the name. Two queries on one
        connection whatever the count (the Jupyter panel lists thousands of jobs)."""
        return self.get_jobs([job_id for job_id, _ in self.list_job_ids(
            status, limit, name=name, backend=backend, offset=offset)])

    def list_job_ids(self, status: str | None = None, limit: int | None = None, *,
                     name: str | None = None, backend: str | None = None,
                     offset: int = 0) -> list[tuple[str, str]]:
        """(id, status) of the jobs :meth:`list_jobs` would return, in its order."""
        where: list[str] = []
        args: list[Any] = []
        if status:
            where.append("status=?")
            args.append(status)
        if backend:
            where.append("backend=?")
            args.append(backend)
        if name:
            escaped = escape_like(name)
            where.append("name LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        query = "SELECT id, status FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        query += " ORDER BY created DESC"
        if limit or offset:
            query += " LIMIT ? OFFSET ?"
            args += [limit if limit else -1, offset]
        with self._connect() as db:
            return [(row[0], row[1]) for row in db.execute(query, args).fetchall()]

    def get_jobs(self, ids: list[str]) -> list[JobRecord]:
        """Records of ``ids`` in that order (ids not in the store are left out); a few
        queries on one connection however many."""
        rows_by_id: dict[str, sqlite3.Row] = {}
        with self._connect() as db:
            for chunk in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                part = ids[chunk:chunk + 500]
                marks = ",".join("?" for _ in part)
                for row in db.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", part):
                    rows_by_id[row["id"]] = row
            rows = [rows_by_id[i] for i in ids if i in rows_by_id]
            replicas: dict[str, list[ReplicaRecord]] = {row["id"]: [] for row in rows}
            for chunk in range(0, len(rows), 500):
                part = [row["id"] for row in rows[chunk:chunk + 500]]
                marks = ",".join("?" for _ in part)
                for rep in db.execute(
                        f"SELECT * FROM replicas WHERE job_id IN ({marks}) ORDER BY job_id,"
                        f" {_REPLICA_ORDER}", part).fetchall():
                    replicas[rep["job_id"]].append(_row_to_replica(rep))
        return [_row_to_job(row, tuple(replicas[row["id"]])) for row in rows]

    def count_jobs(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]

    def update_job(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - _JOB_COLUMNS
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), job_id))

    def transition(self, job_id: str, status: str, **fields: Any) -> bool:
        """Move a job to ``status`` if its current status allows it; return whether it moved.

        Atomic: of two processes racing to end a job, exactly one wins.
        """
        if status not in _ALLOWED_FROM:
            raise ValueError(f"unknown job status {status!r}; one of {JOB_STATUSES}")
        allowed = _ALLOWED_FROM[status]
        unknown = set(fields) - _JOB_COLUMNS
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        sets = ", ".join(["status=?"] + [f"{k}=?" for k in fields])
        marks = ",".join("?" for _ in allowed)
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE jobs SET {sets} WHERE id=? AND status IN ({marks})",
                (status, *fields.values(), job_id, *allowed))
            moved = cur.rowcount == 1
            if moved:
                note = f"status -> {status}" + (f": {fields['error']}" if fields.get("error") else "")
                db.execute("INSERT INTO events (job_id, ts, kind, message) VALUES (?,?,?,?)",
                           (job_id, time.time(), "status", note))
        return moved

    def delete_job(self, job_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def jobs_of_run(self, batch_id: str, index: int) -> list[JobRecord]:
        """Jobs a batch run's notebook submitted (its %%train cells), oldest first."""
        tag = f"{batch_id}/{index}"
        with self._connect() as db:
            ids = [r["id"] for r in db.execute(
                "SELECT id FROM jobs WHERE json_extract(spec, '$.batch_run')=? ORDER BY created",
                (tag,)).fetchall()]
        return [self.get_job(i) for i in ids]

    # -- replicas -----------------------------------------------------------------------
    def update_replica(self, job_id: str, type_: str, index: int, **fields: Any) -> None:
        unknown = set(fields) - _REPLICA_COLUMNS
        if unknown:
            raise ValueError(f"not replica columns: {sorted(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE replicas SET {sets} WHERE job_id=? AND type=? AND idx=?",
                       (*fields.values(), job_id, type_, index))

    # -- events -------------------------------------------------------------------------
    def add_event(self, job_id: str, kind: str, message: str) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO events (job_id, ts, kind, message) VALUES (?,?,?,?)",
                       (job_id, time.time(), kind, message))

    def events(self, job_id: str) -> list[tuple[float, str, str]]:
        with self._connect() as db:
            rows = db.execute("SELECT ts, kind, message FROM events WHERE job_id=? ORDER BY seq",
                              (job_id,)).fetchall()
        return [(r["ts"], r["kind"], r["message"]) for r in rows]
