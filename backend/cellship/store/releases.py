"""Releases in the store: one row per ``cellship release`` (and per ``cellship rollback``),
written when it starts (outcome ``running``, with the pid of the process doing it) and
settled when it ends.

Why the running row doubles as the lock: two releases of one model at once would race for
the serving version. :meth:`ReleasesTable.begin_release` checks for a running release of
the model and inserts its own row in one write transaction, so exactly one wins; a row
whose process is gone (a killed CLI) no longer blocks, and is settled as ``interrupted``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from cellship.errors import JobNotFound
from cellship.store.db import Database

# running -> promoted | failed (a step stopped it; nothing changed what is served) |
# rolled-back (the canary failed a check; the new version was moved aside) | interrupted
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
                for row in db.execute("SELECT * FROM releases WHERE model=? AND outcome='running'",
                                      (record.model,)).fetchall():
                    if row["pid"] and alive(row["pid"]):
                        db.execute("ROLLBACK")
                        return _row(row)
                    db.execute("UPDATE releases SET outcome='interrupted', reason=?, ended=? "
                               "WHERE id=?", ("its process ended before the release finished",
                                              record.started, row["id"]))
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
