"""The jobs list endpoint's fast path: finished jobs are serialized once.

Why: the panel polls the list every couple of seconds, and a store holds thousands of
jobs of which a handful change. Rebuilding every record per request allocates ~100k
objects; in a Jupyter server (a heap of millions of objects) that makes Python run a full
garbage collection every few requests (~100 ms pauses, measured). A finished job never
changes again (terminal statuses are final; only deletion removes it), so its JSON is kept
and reused: a poll reads ids and statuses, re-reads only unfinished jobs, and joins text.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

from cellship.jupyter.views import job_summary
from cellship.store import TERMINAL_STATUSES, JobRecord, Store

SETTLE_SECONDS = 5.0  # a supervisor may still write replica exit codes just after the end


class JobListCache:
    """Serialized summaries of settled (finished a while ago) jobs, per store path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._json: dict[str, dict[str, str]] = {}  # store path -> job id -> JSON text

    def listing(self, store: Store, refresh: Callable[[JobRecord], JobRecord], *,
                status: str | None, name: str | None, backend: str | None,
                limit: int | None, offset: int,
                user: Callable[[JobRecord], str | None] = lambda record: None) -> str:
        """The list endpoint's body (JSON text), newest first; ``user`` says who
        submitted a job (read once per job, like the rest of a settled job's row)."""
        ids = store.list_job_ids(status=status, limit=limit, name=name, backend=backend,
                                 offset=offset)
        with self._lock:
            cached = self._json.setdefault(str(store.path), {})
            missing = [job_id for job_id, _ in ids if job_id not in cached]
        fresh: dict[str, str] = {}
        if missing:
            now = time.time()
            for record in store.get_jobs(missing):
                if not record.done and record.supervisor_pid is not None:
                    record = refresh(record)  # a vanished supervisor means failed
                text = json.dumps(job_summary(record, user(record)), allow_nan=False)
                fresh[record.id] = text
                if record.status in TERMINAL_STATUSES and record.ended is not None \
                        and now - record.ended > SETTLE_SECONDS:
                    with self._lock:
                        cached[record.id] = text
        with self._lock:
            parts = [fresh.get(job_id) or cached.get(job_id) for job_id, _ in ids]
            if len(cached) > 2 * len(ids) + 1000:  # forget deleted jobs now and then
                keep = {job_id for job_id, _ in ids}
                for job_id in [j for j in cached if j not in keep]:
                    del cached[job_id]
        rows = [part for part in parts if part is not None]  # deleted meanwhile
        return ('{"jobs": [' + ", ".join(rows) + f'], "count": {len(rows)}, '
                f'"total": {store.count_jobs()}}}')


