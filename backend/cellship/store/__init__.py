"""The embedded job store: one SQLite database (WAL mode) shared by kernels, the CLI and
supervisors.

Why SQLite: several processes (a kernel, a supervisor per job, the CLI, the Jupyter server)
read and write job state concurrently; WAL gives readers that never block the writer, and
conditional UPDATEs make status transitions atomic (a cancel racing a finish has exactly
one winner). A connection is opened per operation: cheap (~0.1 ms), and safe across
threads and forks.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from cellship.errors import JobNotFound, StoreError

SCHEMA_VERSION = 2  # 2: batches and runs (additive: a version-1 store upgrades in place)
_OPEN_TIMEOUT_S = 30.0  # how long opening waits for another process creating the store

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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    spec TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    logdir TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    error TEXT,
    supervisor_pid INTEGER,
    detached INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    source TEXT
);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs(name);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
CREATE TABLE IF NOT EXISTS replicas (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    pid INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    log_path TEXT NOT NULL,
    address TEXT,
    PRIMARY KEY (job_id, type, idx)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    notebook TEXT NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    parallel INTEGER NOT NULL,
    kernel TEXT,
    output_dir TEXT NOT NULL,
    cwd TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    coordinator_pid INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_name ON batches(name);
CREATE TABLE IF NOT EXISTS runs (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    output_path TEXT NOT NULL,
    log_path TEXT NOT NULL,
    started REAL,
    ended REAL,
    error TEXT,
    pid INTEGER,
    recorded TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (batch_id, idx)
);
"""


@dataclass(frozen=True)
class ReplicaRecord:
    job_id: str
    type: str
    index: int
    state: str
    exit_code: int | None
    pid: int | None
    restarts: int
    log_path: str
    address: str | None

    @property
    def label(self) -> str:
        """The prefix users see in logs: ``worker 1``, ``chief``, ``ps 0``."""
        return self.type if self.type == "chief" else f"{self.type} {self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "index": self.index, "state": self.state,
                "exit_code": self.exit_code, "pid": self.pid, "restarts": self.restarts,
                "log_path": self.log_path, "address": self.address}


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


def _escape_like(text: str) -> str:
    """``text`` for a LIKE pattern with ESCAPE '\\': its %, _ and \\ match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
        log_path=row["log_path"], address=row["address"],
    )


@dataclass(frozen=True)
class RunRecord:
    """One papermill execution of a batch: a notebook with one set of parameters."""

    batch_id: str
    index: int
    parameters: Mapping[str, Any]
    status: str  # pending | running | succeeded | failed | cancelled
    attempt: int
    output_path: str
    log_path: str
    started: float | None
    ended: float | None
    error: str | None
    pid: int | None
    recorded: Mapping[str, Any]

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class BatchRecord:
    id: str
    name: str
    notebook: str
    status: str
    backend: str
    parallel: int
    kernel: str | None
    output_dir: str
    cwd: str
    created: float
    started: float | None = None
    ended: float | None = None
    coordinator_pid: int | None = None
    error: str | None = None
    runs: tuple[RunRecord, ...] = field(default=())

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _row_to_run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(batch_id=row["batch_id"], index=row["idx"],
                     parameters=json.loads(row["parameters"]), status=row["status"],
                     attempt=row["attempt"], output_path=row["output_path"],
                     log_path=row["log_path"], started=row["started"], ended=row["ended"],
                     error=row["error"], pid=row["pid"], recorded=json.loads(row["recorded"]))


_BATCH_COLUMNS = frozenset({"status", "parallel", "started", "ended", "coordinator_pid", "error"})
_RUN_COLUMNS = frozenset({"status", "attempt", "started", "ended", "error", "pid", "recorded"})


_JOB_COLUMNS = frozenset({"name", "status", "started", "ended", "error", "supervisor_pid",
                          "detached", "restarts", "source"})
_REPLICA_COLUMNS = frozenset({"state", "exit_code", "pid", "restarts", "log_path", "address"})


class Store:
    """Access to the job store at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _OPEN_TIMEOUT_S
        while True:
            try:
                self._initialise()
                return
            except StoreError:
                raise
            except sqlite3.OperationalError as err:
                # Switching a fresh database to WAL needs an exclusive lock, and SQLite
                # answers "database is locked" at once (without its busy handler) when
                # another process opens the same new file at that moment: retry briefly.
                if "locked" in str(err) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise StoreError(f"The job store {self.path} cannot be opened ({err}); move "
                                 "it away or set CELLSHIP_HOME to another directory.") from err
            except sqlite3.DatabaseError as err:
                raise StoreError(f"The job store {self.path} cannot be opened ({err}); move "
                                 "it away or set CELLSHIP_HOME to another directory.") from err

    def _initialise(self) -> None:
        """Check the schema version, switch to WAL once, create missing tables."""
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The job store {self.path} was written by a newer cellship "
                    f"(schema {version} > {SCHEMA_VERSION}); upgrade cellship, or set "
                    "CELLSHIP_HOME to another directory.")
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            if version != SCHEMA_VERSION:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def default(cls) -> "Store":
        from cellship.paths import store_path
        return cls(store_path())

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
        try:
            yield db
        finally:
            db.close()

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
            reps = db.execute("SELECT * FROM replicas WHERE job_id=? ORDER BY"
                              " CASE type WHEN 'chief' THEN 0 WHEN 'worker' THEN 1 ELSE 2 END, idx",
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
            escaped = _escape_like(ref)
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
            escaped = _escape_like(name)
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
                        " CASE type WHEN 'chief' THEN 0 WHEN 'worker' THEN 1 ELSE 2 END, idx",
                        part).fetchall():
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

    # -- batches ------------------------------------------------------------------------
    def create_batch(self, batch: BatchRecord) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO batches (id, name, notebook, status, backend, parallel, kernel,"
                " output_dir, cwd, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (batch.id, batch.name, batch.notebook, batch.status, batch.backend,
                 batch.parallel, batch.kernel, batch.output_dir, batch.cwd, batch.created))
            for run in batch.runs:
                db.execute(
                    "INSERT INTO runs (batch_id, idx, parameters, status, output_path, log_path)"
                    " VALUES (?,?,?,?,?,?)",
                    (batch.id, run.index, json.dumps(dict(run.parameters)), run.status,
                     run.output_path, run.log_path))
            db.execute("COMMIT")

    def get_batch(self, batch_id: str) -> BatchRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM batches WHERE id=?", (batch_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"No batch with id {batch_id!r}; `cellship batches` lists them.")
            runs = db.execute("SELECT * FROM runs WHERE batch_id=? ORDER BY idx", (batch_id,)).fetchall()
        data = {k: row[k] for k in row.keys()}
        return BatchRecord(**data, runs=tuple(_row_to_run(r) for r in runs))

    def find_batch(self, ref: str) -> BatchRecord:
        """A batch by id, unique id prefix, or name (the newest batch of that name)."""
        ref = ref.strip()
        with self._connect() as db:
            exact = db.execute("SELECT id FROM batches WHERE id=?", (ref,)).fetchone()
            named = db.execute("SELECT id FROM batches WHERE name=? ORDER BY created DESC",
                               (ref,)).fetchall()
            escaped = _escape_like(ref)
            prefixed = db.execute("SELECT id FROM batches WHERE id LIKE ? ESCAPE '\\'",
                                  (escaped + "%",)).fetchall() if ref else []
        if exact:
            return self.get_batch(exact["id"])
        if named:  # a name is reused by `cellship batch` reruns: the newest one is meant
            return self.get_batch(named[0]["id"])
        if len(prefixed) == 1:
            return self.get_batch(prefixed[0]["id"])
        if len(prefixed) > 1:
            ids = ", ".join(r["id"] for r in prefixed)
            raise JobNotFound(f"{ref!r} matches several batch ids ({ids}); type more of the id.")
        raise JobNotFound(f"No batch has the id or name {ref!r}; `cellship batches` lists them.")

    def list_batches(self, limit: int | None = None) -> list[BatchRecord]:
        query = "SELECT id FROM batches ORDER BY created DESC" + (" LIMIT ?" if limit else "")
        with self._connect() as db:
            ids = [r["id"] for r in db.execute(query, (limit,) if limit else ()).fetchall()]
        return [self.get_batch(i) for i in ids]

    def update_batch(self, batch_id: str, **fields: Any) -> None:
        self._update("batches", _BATCH_COLUMNS, "id=?", (batch_id,), fields)

    def update_run(self, batch_id: str, index: int, **fields: Any) -> None:
        if "recorded" in fields:
            fields["recorded"] = json.dumps(fields["recorded"], default=str)
        self._update("runs", _RUN_COLUMNS, "batch_id=? AND idx=?", (batch_id, index), fields)

    def get_run(self, batch_id: str, index: int) -> RunRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE batch_id=? AND idx=?",
                             (batch_id, index)).fetchone()
        if row is None:
            raise JobNotFound(f"Batch {batch_id} has no run {index}.")
        return _row_to_run(row)

    def _update(self, table: str, allowed: frozenset[str], where: str, key: tuple,
                fields: Mapping[str, Any]) -> None:
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not {table} columns: {sorted(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE {table} SET {sets} WHERE {where}", (*fields.values(), *key))

    def jobs_of_run(self, batch_id: str, index: int) -> list[JobRecord]:
        """Jobs a batch run's notebook submitted (its %%train cells), oldest first."""
        tag = f"{batch_id}/{index}"
        with self._connect() as db:
            ids = [r["id"] for r in db.execute(
                "SELECT id FROM jobs WHERE json_extract(spec, '$.batch_run')=? ORDER BY created",
                (tag,)).fetchall()]
        return [self.get_job(i) for i in ids]
