"""Batches in the store: a batch is one notebook run under several parameter sets, each
set one run (a papermill execution) with its own status, attempt count and recorded values.

Runs use the job status words (pending, running, succeeded, failed, cancelled) so the CLI,
the panel and ``cellship batch-show`` read them the same way.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from cellship.errors import JobNotFound
from cellship.store.db import Database, escape_like
from cellship.store.jobs import TERMINAL_STATUSES

_BATCH_COLUMNS = frozenset({"status", "parallel", "started", "ended", "coordinator_pid", "error"})
_RUN_COLUMNS = frozenset({"status", "attempt", "started", "ended", "error", "pid", "recorded"})


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


class BatchesTable(Database):
    """The batch half of :class:`cellship.store.Store`: batches and their runs."""

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
            escaped = escape_like(ref)
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
