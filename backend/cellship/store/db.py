"""The SQLite file itself: schema, opening (WAL, version check, the locked-open retry) and
one connection per operation.

Why a connection per operation: cheap (~0.1 ms), and safe across threads and forks, which
kernels (threads), the CLI and supervisors (forks) all do.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from cellship.errors import StoreError

# 2: batches and runs; 3: a replica's pod, node and why it cannot start; 4: releases (the
# `cellship release` pipeline's records). Each step is additive (new tables, new nullable
# columns), so an older store upgrades in place.
SCHEMA_VERSION = 4
_OPEN_TIMEOUT_S = 30.0  # how long opening waits for another process creating the store

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
    pod TEXT,
    node TEXT,
    reason TEXT,
    diagnosis TEXT,
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
CREATE TABLE IF NOT EXISTS releases (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    target TEXT NOT NULL,
    version INTEGER,
    previous INTEGER,
    notebook TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    gates TEXT NOT NULL DEFAULT '[]',
    outcome TEXT NOT NULL,
    failed_step TEXT,
    reason TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    batch_id TEXT,
    output_notebook TEXT,
    user TEXT NOT NULL,
    pid INTEGER,
    started REAL NOT NULL,
    ended REAL
);
CREATE INDEX IF NOT EXISTS releases_model ON releases(model, started);
"""


# Columns added to existing tables after their first version, in order: CREATE TABLE IF
# NOT EXISTS leaves an existing table as it is, so an older store gets them by ALTER TABLE.
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("replicas", "pod", "TEXT"),        # 3
    ("replicas", "node", "TEXT"),       # 3
    ("replicas", "reason", "TEXT"),     # 3
    ("replicas", "diagnosis", "TEXT"),  # 3
)


def escape_like(text: str) -> str:
    """``text`` for a LIKE pattern with ESCAPE '\\': its %, _ and \\ match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Database:
    """The store file at ``path`` (created on first use); the job and batch halves of
    :class:`cellship.store.Store` build their queries on :meth:`_connect`."""

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
                self._migrate(db)

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Add the columns an older store lacks and stamp the version, in one write
        transaction: two processes opening the same old store at once both get here, and
        the second one, once the first has committed, finds the columns there and adds
        nothing (rows already stored keep their values; the new columns read NULL)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, column, kind in _ADDED_COLUMNS:
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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

    def _update(self, table: str, allowed: frozenset[str], where: str, key: tuple[Any, ...],
                fields: Mapping[str, Any]) -> None:
        """``UPDATE table SET fields WHERE where``; a field outside ``allowed`` (the
        columns callers may change) is a ValueError, so a typo never reaches SQL."""
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not {table} columns: {sorted(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE {table} SET {sets} WHERE {where}", (*fields.values(), *key))

    def watch_changes(self) -> "ChangeWatch":
        """A :class:`ChangeWatch` over this store (close it when done)."""
        return ChangeWatch(self.path)


# What a watcher of the store (the panel's push channel) calls a state change: the
# statuses and timings of jobs, their replicas' states and placement, batches and their runs.
# Log files, metrics and events are not in it: they change all the time and have streams.
_STATE_QUERIES = (
    "SELECT id, status, started, ended, restarts, detached FROM jobs ORDER BY id",
    "SELECT job_id, type, idx, state, exit_code, restarts, pod, node, reason FROM replicas "
    "ORDER BY job_id, type, idx",
    "SELECT id, status, started, ended FROM batches ORDER BY id",
    "SELECT batch_id, idx, status, attempt FROM runs ORDER BY batch_id, idx",
)


class ChangeWatch:
    """A cheap "has the store changed?" signal for a long-lived watcher.

    :meth:`version` is SQLite's ``PRAGMA data_version`` on one connection held open for
    the purpose: it changes whenever any other connection (another process, or this one's
    per-operation connections) commits, and reading it costs microseconds, so it can be
    asked ten times a second. Since any write moves it (an event row, a job's heartbeat),
    :meth:`state` says what changed that a panel shows (a digest of the rows of
    ``_STATE_QUERIES``, a few ms per 1,000 jobs, read only when the version moved): two
    equal states mean nothing visible changed. The connection never writes.
    """

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)

    def version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def state(self) -> str:
        import hashlib

        digest = hashlib.blake2b(digest_size=12)
        for query in _STATE_QUERIES:
            for row in self._db.execute(query):
                digest.update(repr(tuple(row)).encode())
            digest.update(b"|")
        return digest.hexdigest()

    def close(self) -> None:
        self._db.close()
