"""The job endpoints: the list, one job's detail, cancel, delete, metrics, TensorBoard and
files (its logs stream from :mod:`.logs`)."""

from __future__ import annotations

import json
from typing import Any

import tornado.web

from cellship.errors import CellshipError, JobNotFound, UsageError
from cellship.jupyter import views
from cellship.jupyter.base import CellshipHandler, backend, inside, store
from cellship.jupyter.listing import JobListCache
from cellship.store import JOB_STATUSES, JobRecord
from cellship.train.api import Job

MAX_FILE_BYTES = 1 << 20


_LISTING = JobListCache()


def _list_jobs(status: str | None, name: str | None, backend_name: str | None,
               limit: int | None, offset: int) -> str:
    def refresh(record: JobRecord) -> JobRecord:
        try:
            return backend(record.backend).refresh(record)
        except CellshipError:
            return record  # a backend no longer installed: show the record as stored

    def user(record: JobRecord) -> str | None:
        try:
            return backend(record.backend).user(record)
        except CellshipError:
            return None  # a backend no longer installed: it cannot say

    return _LISTING.listing(store(), refresh, status=status, name=name, backend=backend_name,
                            limit=limit, offset=offset, user=user)


def _cluster_part(status: str | None) -> str:
    """``?cluster=1``: the cluster's jobs this store does not have, and why none were
    listed when the cluster was not asked or did not answer (a few seconds at most)."""
    from cellship.train.api import cluster_only_jobs

    found, reason = cluster_only_jobs(store(), status=status)
    return (f', "cluster_jobs": {json.dumps([j.to_dict() for j in found], allow_nan=False)}'
            f', "cluster_reason": {json.dumps(reason)}')


def prewarm(log: Any) -> None:
    """Serialize the finished jobs once at server start (a worker thread), so the panel's
    first list request does not pay for the whole store (~50 ms of work per 1,000 jobs,
    plus the full garbage collection it sets off in a large Jupyter process)."""
    import sqlite3

    try:
        _list_jobs(None, None, None, None, 0)
    except (CellshipError, sqlite3.Error, OSError) as err:
        log.warning("cellship: could not read the job store at start-up: %s", err)


class JobsHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        status = self.get_query_argument("status", None) or None
        if status is not None and status not in JOB_STATUSES:
            raise self.fail(400, f"Unknown status {status!r}; one of {', '.join(JOB_STATUSES)}.")
        limit = self.int_argument("limit", None, low=1, high=100_000)
        offset = self.int_argument("offset", 0) or 0
        text = await self.call(_list_jobs, status, self.get_query_argument("name", None) or None,
                               self.get_query_argument("backend", None) or None, limit, offset)
        if self.bool_argument("cluster", False):
            text = text[:-1] + await self.call(_cluster_part, status) + "}"
        self.set_header("Content-Type", "application/json")
        self.finish(text)


class JobHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        job = await self.call(self.job, job_id)
        self.reply(await self.call(views.job_detail, job, self.root_dir, store()))

    @tornado.web.authenticated
    async def delete(self, job_id: str) -> None:
        job = await self.call(self.job, job_id)
        await self.call(job.delete)
        self.set_status(204)
        self.finish()


class JobCancelHandler(CellshipHandler):
    @tornado.web.authenticated
    async def post(self, job_id: str) -> None:
        job = await self.call(self.job, job_id)
        await self.call(job.cancel)
        self.reply(await self.call(views.job_detail, job, self.root_dir, store()))


class JobDetachHandler(CellshipHandler):
    """The notebook job view's Detach: the kernel following the job is busy running the
    cell and cannot take a widget message, so the view marks the job here, then
    interrupts the kernel; the follower, seeing the job detached, stops and keeps it."""

    @tornado.web.authenticated
    async def post(self, job_id: str) -> None:
        job = await self.call(self.job, job_id)
        await self.call(store().update_job, job.id, detached=True)
        self.reply(await self.call(views.job_detail, job, self.root_dir, store()))


class JobMetricsHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        max_points = self.int_argument("max_points", 200, low=2, high=100_000) or 200
        job = await self.call(self.job, job_id)
        buffer = await self.call(job.metrics_buffer)
        series = await self.call(views.metric_series, buffer, max_points)
        self.reply({"id": job.id, "series": series})


class JobTensorBoardHandler(CellshipHandler):
    @tornado.web.authenticated
    async def post(self, job_id: str) -> None:
        from cellship.watch.tensorboard import open_tensorboard

        job = await self.call(self.job, job_id)
        server = await self.call(open_tensorboard, [job.id])
        self.reply({"url": server.proxied_url(), "port": server.port, "pid": server.pid,
                    "runs": [name for name, _ in server.logdirs]})


class JobFilesHandler(CellshipHandler):
    """A job's directory (program, logs, output) for browsers whose Jupyter root does not
    contain cellship's home: a directory listing, or a small text file's content."""

    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        job = await self.call(self.job, job_id)
        relative = self.get_query_argument("path", "") or ""
        self.reply(await self.call(_describe, job, relative))


def _describe(job: Job, relative: str) -> dict[str, Any]:
    target = inside(job.record.job_dir, relative)  # PathRefused: 400
    if target.is_dir():
        entries = []
        for entry in sorted(target.iterdir(), key=lambda p: p.name):
            try:
                stat = entry.stat()
            except OSError:
                continue
            entries.append({"name": entry.name, "type": "directory" if entry.is_dir() else "file",
                            "size": stat.st_size, "modified": views.iso(stat.st_mtime)})
        return {"path": relative, "type": "directory", "entries": entries}
    if not target.is_file():
        raise JobNotFound(f"The job has no file {relative!r}.")
    size = target.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UsageError(f"{relative} is {size} bytes; only files up to {MAX_FILE_BYTES} "
                         "bytes are shown here.")
    content = target.read_bytes().decode("utf-8", errors="replace")
    return {"path": relative, "type": "file", "size": size, "content": content}
