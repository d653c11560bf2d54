"""Releases in the store: one row per ``cellship release`` (and per ``cellship rollback``),
written when it starts (outcome ``running``, with the pid of the process doing it) and
settled when it ends.

Why the running row doubles as the lock: two releases of one model at once would race for
the serving version. :meth:`ReleasesTable.begin_release` checks for a running release of
the model and inserts its own row in one write transaction, so exactly one wins; a row
whose process is gone (a killed CLI) no longer blocks, and is settled as ``interrupted``.

While a release runs, ``failed_step`` holds the step it is at (so an interrupted one says
where it stopped); once it ends, the step that stopped it (None when promoted). An
``interrupted`` row may have left its staged version behind: :meth:`claim_interrupted`
hands such rows to the process that finishes them (``cellship release --resume``), marking
them running under its pid, so they are the lock while it cleans up and, should it die
too, interrupted again.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from cellship.errors import JobNotFound
from cellship.store.db import Database

# running -> promoted | failed (a step stopped it; nothing changed what is served) |
# rolled-back (the canary failed a check, or an interrupted release was finished by
# `--resume`/`rollback`: the new version was moved aside) | interrupted (its process ended
# mid-release; leftovers may remain until it is finished)
RELEASE_OUTCOMES = ("running", "promoted", "failed", "rolled-back", "interrupted", "rollback")
_RELEASE_COLUMNS = frozenset({"version", "previous", "outcome", "failed_step", "reason", "details",
                              "batch_id", "output_notebook", "gates", "ended", "pid"})


@dataclass(frozen=True)
class ReleaseRecord:
    """One release (``kind="release"``) or rollback (``kind="rollback"``) of a model."""

    id: str
    kind: str
    model: str
    target: str
    outcome: str
    user: str
    started: float
    version: int | None = None
    previous: int | None = None  # the version served before it
    notebook: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    gates: Sequence[Mapping[str, Any]] = ()
    failed_step: str | None = None
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    batch_id: str | None = None
    output_notebook: str | None = None
    pid: int | None = None
    ended: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _row(row: sqlite3.Row) -> ReleaseRecord:
    data = {k: row[k] for k in row.keys()}
    for key in ("parameters", "gates", "details"):
        data[key] = json.loads(data[key])
    data["gates"] = tuple(data["gates"])
    return ReleaseRecord(**data)


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


class ReleasesTable(Database):
    """The release half of :class:`cellship.store.Store`."""

    def begin_release(self, record: ReleaseRecord, alive: Callable[[int], bool]) -> ReleaseRecord | None:
        """Insert ``record`` (outcome running) unless another release of the same model is
        running in a live process: then return that one and insert nothing. ``alive`` says
        whether a pid still runs (the store imports no process helpers of its own)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                running = self._settle_dead(db, record.model, alive, record.started)
                if running is not None:
                    db.execute("ROLLBACK")
                    return running
                db.execute(
                    "INSERT INTO releases (id, kind, model, target, version, previous, notebook,"
                    " parameters, gates, outcome, failed_step, reason, details, batch_id,"
                    " output_notebook, user, pid, started, ended)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (record.id, record.kind, record.model, record.target, record.version,
                     record.previous, record.notebook, _json(dict(record.parameters)),
                     _json(list(record.gates)), record.outcome, record.failed_step,
                     record.reason, _json(dict(record.details)), record.batch_id,
                     record.output_notebook, record.user, record.pid, record.started,
                     record.ended))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return None

    @staticmethod
    def _settle_dead(db: sqlite3.Connection, model: str, alive: Callable[[int], bool],
                     now: float) -> ReleaseRecord | None:
        """Mark ``model``'s running rows whose process is gone ``interrupted`` (keeping the
        step they reached); return a running row whose process lives, if any."""
        live = None
        for row in db.execute("SELECT * FROM releases WHERE model=? AND outcome='running'",
                              (model,)).fetchall():
            if row["pid"] and alive(row["pid"]):
                live = live or _row(row)
                continue
            db.execute("UPDATE releases SET outcome='interrupted', reason=?, ended=? WHERE id=?",
                       (f"its process ended (pid {row['pid']}) before the release finished",
                        now, row["id"]))
        return live

    def settle_dead_releases(self, model: str, alive: Callable[[int], bool], now: float) -> None:
        """Mark the running releases of ``model`` whose process is gone ``interrupted``
        (what ``cellship releases MODEL`` shows)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._settle_dead(db, model, alive, now)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def claim_interrupted(self, model: str, pid: int, alive: Callable[[int], bool],
                          now: float) -> tuple[ReleaseRecord | None, list[ReleaseRecord]]:
        """In one write transaction: (a live running release of ``model``, []) when there
        is one (nothing changes); else (None, the interrupted releases, not rollbacks: those
        left no staged version), each marked running under ``pid``, as they were before this
        call otherwise."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                live = self._settle_dead(db, model, alive, now)
                if live is not None:
                    db.execute("ROLLBACK")
                    return live, []
                rows = db.execute("SELECT * FROM releases WHERE model=? AND outcome='interrupted' "
                                  "AND kind='release' ORDER BY started, rowid", (model,)).fetchall()
                db.executemany("UPDATE releases SET outcome='running', pid=?, ended=NULL WHERE id=?",
                               [(pid, r["id"]) for r in rows])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return None, [_row(r) for r in rows]

    def update_release(self, release_id: str, **fields: Any) -> None:
        for key in ("gates", "details"):
            if key in fields:
                fields[key] = _json(list(fields[key]) if key == "gates" else dict(fields[key]))
        self._update("releases", _RELEASE_COLUMNS, "id=?", (release_id,), fields)

    def get_release(self, release_id: str) -> ReleaseRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM releases WHERE id=?", (release_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"No release with id {release_id!r}; `cellship releases MODEL` "
                              "lists them.")
        return _row(row)

    def list_releases(self, model: str) -> list[ReleaseRecord]:
        """Every release and rollback of ``model``, oldest first (the order they happened)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM releases WHERE model=? ORDER BY started, rowid",
                              (model,)).fetchall()
        return [_row(r) for r in rows]

    def released_models(self) -> list[str]:
        """Every model with a release or rollback recorded, by name."""
        with self._connect() as db:
            rows = db.execute("SELECT DISTINCT model FROM releases ORDER BY model").fetchall()
        return [row[0] for row in rows]
