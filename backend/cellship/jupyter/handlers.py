"""One small handler per endpoint of ``/cellship/api/`` (jupyterlab-git's habit).

Every handler is ``@tornado.web.authenticated`` like any Jupyter endpoint (no token, no
cookie: 403), answers JSON, and reports every error as ``{"code", "message"}`` through
:meth:`CellshipHandler.write_error`: a :class:`~cellship.errors.CellshipError` becomes a 4xx
carrying its sentence (JobNotFound: 404 naming the id). Anything that may block (SQLite,
cancel waiting for processes, TensorBoard starting, event files) runs in a worker thread
via :meth:`CellshipHandler.call`, never on the tornado loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from tornado.iostream import StreamClosedError

from cellship import __version__
from cellship.errors import CellshipError, JobNotFound, ModelNotFound, PathRefused, UsageError
from cellship.jupyter import views
from cellship.jupyter.listing import JobListCache
from cellship.store import JobRecord, Store
from cellship.train.api import Job
from cellship.train.backend import Backend
from cellship.train.backends import get_backend
from cellship.watch.logstream import is_tf_noise, read_from
from cellship.watch.metrics import is_relay

API_VERSION = 1
CAPABILITIES = ("jobs", "logs", "metrics", "tensorboard", "batches", "models")
LOG_POLL_SECONDS = 0.25
DONE_CHECK_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
MAX_FILE_BYTES = 1 << 20

T = TypeVar("T")


def status_of(err: CellshipError) -> int:
    """The HTTP status a cellship error maps to: not found 404, bad input 400, anything
    else (cancelling a finished job, deleting a running one, a backend refusing) 409."""
    if isinstance(err, (JobNotFound, ModelNotFound)):
        return 404
    if isinstance(err, UsageError):
        return 400
    return 409


_STORES: dict[str, Store] = {}


def store() -> Store:
    """The job store of ``$CELLSHIP_HOME`` (read per request: tests and users may point the
    server elsewhere), opened once per path."""
    from cellship.paths import store_path

    path = str(store_path())
    if path not in _STORES:
        _STORES[path] = Store(path)
    return _STORES[path]


_BACKENDS: dict[tuple[str, str], Backend] = {}


def backend(name: str) -> Backend:
    """The backend ``name`` over the current store, made once: resolving a backend scans
    the installed entry points (~25 ms), too slow to repeat per request or per job."""
    db = store()
    key = (str(db.path), name)
    if key not in _BACKENDS:
        _BACKENDS[key] = get_backend(name, db)
    return _BACKENDS[key]


def inside(root: str | Path, relative: str) -> Path:
    """``root/relative`` if it stays inside ``root`` after resolving ``..`` and symlinks;
    PathRefused otherwise. Absolute paths and NUL bytes are refused outright."""
    if "\0" in relative or relative.startswith(("/", "\\")) or (len(relative) > 1 and relative[1] == ":"):
        raise PathRefused(f"Refused path {relative!r}: give a path relative to the directory.")
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, relative))
    if target != base and not target.startswith(base + os.sep):
        raise PathRefused(f"Refused path {relative!r}: it leads outside the directory.")
    return Path(target)


class CellshipHandler(APIHandler):
    """Base: JSON errors, the store, and blocking work off the event loop."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            err = exc_info[1]
            if isinstance(err, tornado.web.HTTPError) and err.log_message:
                message = err.log_message % err.args if err.args else err.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"code": status_code, "message": message}))

    def fail(self, status: int, message: str) -> tornado.web.HTTPError:
        return tornado.web.HTTPError(status, message)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a worker thread; a CellshipError becomes its 4xx."""
        try:
            return await asyncio.to_thread(fn, *args)
        except CellshipError as err:
            raise self.fail(status_of(err), str(err)) from err

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, allow_nan=False, default=str))

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as err:
            raise self.fail(400, f"The request body is not JSON: {err}.") from None
        if not isinstance(data, dict):
            raise self.fail(400, "The request body must be a JSON object.")
        return data

    def int_argument(self, name: str, default: int | None, low: int = 0,
                     high: int | None = None) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.fail(400, f"Query parameter {name} must be a whole number, got {raw!r}.") from None
        if value < low or (high is not None and value > high):
            raise self.fail(400, f"Query parameter {name} must be between {low} and "
                                 f"{high if high is not None else 'any'}, got {value}.")
        return value

    def bool_argument(self, name: str, default: bool) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise self.fail(400, f"Query parameter {name} must be true or false, got {raw!r}.")

    @property
    def root_dir(self) -> str | None:
        return getattr(self.contents_manager, "root_dir", None)

    @staticmethod
    def job(job_id: str) -> Job:
        """The job with exactly this id (REST clients use ids, not names)."""
        record = store().get_job(job_id)
        return Job(record, backend(record.backend))


class VersionHandler(CellshipHandler):
    """What the panel checks first: is the server extension there, and does it speak the
    API the panel was built for."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.reply({"version": __version__, "api_version": API_VERSION,
                    "capabilities": list(CAPABILITIES)})


_LISTING = JobListCache()


def _list_jobs(status: str | None, name: str | None, backend_name: str | None,
               limit: int | None, offset: int) -> str:
    def refresh(record: JobRecord) -> JobRecord:
        try:
            return backend(record.backend).refresh(record)
        except CellshipError:
            return record  # a backend no longer installed: show the record as stored

    return _LISTING.listing(store(), refresh, status=status, name=name, backend=backend_name,
                            limit=limit, offset=offset)


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
        from cellship.store import JOB_STATUSES

        if status is not None and status not in JOB_STATUSES:
            raise self.fail(400, f"Unknown status {status!r}; one of {', '.join(JOB_STATUSES)}.")
        limit = self.int_argument("limit", None, low=1, high=100_000)
        offset = self.int_argument("offset", 0) or 0
        text = await self.call(_list_jobs, status, self.get_query_argument("name", None) or None,
                               self.get_query_argument("backend", None) or None, limit, offset)
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


class JobLogsHandler(CellshipHandler):
    """The job's log lines, as server-sent events (default) or one JSON page.

    The cursor (SSE event id, ``?offset=``, or the ``Last-Event-ID`` header a reconnecting
    EventSource sends) is one byte offset per streamed replica, comma-separated, each just
    past a complete line: resuming repeats and loses nothing. Relay lines (metrics) are
    never shown; TensorFlow's C++ chatter only with ``tf_noise=true``.
    """

    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        job = await self.call(self.job, job_id)
        record = await self.call(lambda: job.record)
        replicas = self._replicas(record)
        offsets = self._cursor(len(replicas))
        tf_noise = self.bool_argument("tf_noise", False)
        follow = self.bool_argument("follow", True)
        as_json = self.get_query_argument("format", "sse") == "json"
        if self.get_query_argument("format", "sse") not in ("sse", "json"):
            raise self.fail(400, "Query parameter format must be sse or json.")
        if as_json:
            lines = self._read(replicas, offsets, final=record.done, tf_noise=tf_noise)
            self.reply({"id": record.id, "status": record.status, "done": record.done,
                        "offset": _cursor_text(offsets), "lines": lines})
            return
        await self._stream(job, replicas, offsets, follow, tf_noise)

    def _replicas(self, record: JobRecord) -> list[tuple[str, str]]:
        """(label, log path) of the replicas asked for (``?replica=KEY``, default all). The
        paths come from the store, never from the request: the parameter only selects."""
        wanted = self.get_query_argument("replica", None)
        every = [(views.replica_key(r), r.label, r.log_path) for r in record.replicas]
        if wanted is None or wanted == "":
            return [(label, path) for _, label, path in every]
        if "/" in wanted or "\\" in wanted or ".." in wanted or "\0" in wanted:
            raise self.fail(400, f"Refused replica {wanted!r}: give a replica key such as "
                                 "worker-0, not a path.")
        for key, label, path in every:
            if key == wanted:
                return [(label, path)]
        keys = ", ".join(key for key, _, _ in every)
        raise self.fail(404, f"Job {record.id} has no replica {wanted!r}; it has {keys}.")

    def _cursor(self, count: int) -> list[int]:
        raw = self.get_query_argument("offset", None) or self.request.headers.get("Last-Event-ID")
        if not raw:
            return [0] * count
        try:
            offsets = [int(part) for part in raw.split(",")]
        except ValueError:
            offsets = []
        if len(offsets) != count or any(o < 0 for o in offsets):
            raise self.fail(400, f"Offset {raw!r} is not a log cursor of this stream: "
                                 f"{count} comma-separated byte offsets, as sent in event ids.")
        return offsets

    @staticmethod
    def _read(replicas: list[tuple[str, str]], offsets: list[int], final: bool,
              tf_noise: bool) -> list[dict[str, str]]:
        out = []
        for i, (label, path) in enumerate(replicas):
            lines, offsets[i] = read_from(path, offsets[i], final=final)
            out.extend({"replica": label, "text": text} for text in lines
                       if not is_relay(text) and (tf_noise or not is_tf_noise(text)))
        return out

    async def _stream(self, job: Job, replicas: list[tuple[str, str]], offsets: list[int],
                      follow: bool, tf_noise: bool) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # proxies must not hold the stream back
        try:
            self.write("retry: 2000\n\n")
            await self.flush()
            done, last_check, last_write = False, 0.0, time.monotonic()
            status: str | None = None
            while True:
                if follow and time.monotonic() - last_check >= DONE_CHECK_SECONDS:
                    record = await self.call(lambda: job.record)
                    done, status = record.done, record.status
                    last_check = time.monotonic()
                done = done or not follow
                before = list(offsets)
                lines = self._read(replicas, offsets, final=done, tf_noise=tf_noise)
                if offsets != before:
                    self.write(f"id: {_cursor_text(offsets)}\ndata: "
                               f"{json.dumps({'lines': lines})}\n\n")
                    await self.flush()
                    last_write = time.monotonic()
                if done:
                    self.write(f"event: end\ndata: {json.dumps({'status': status})}\n\n")
                    await self.flush()
                    break
                if time.monotonic() - last_write > KEEPALIVE_SECONDS:
                    self.write(": keepalive\n\n")
                    await self.flush()
                    last_write = time.monotonic()
                await asyncio.sleep(LOG_POLL_SECONDS)
        except StreamClosedError:
            return  # the browser went away (closed the panel, reloaded): nothing to clean
        self.finish()


def _cursor_text(offsets: list[int]) -> str:
    return ",".join(str(o) for o in offsets)


def _batch_list(limit: int | None) -> dict[str, Any]:
    records = store().list_batches(limit)
    return {"batches": [views.batch_summary(r) for r in records], "count": len(records)}


def _batch_detail(batch_id: str, root_dir: str | None) -> dict[str, Any]:
    from cellship.runs.api import Batch

    record = store().get_batch(batch_id)
    handle = Batch(record, store())
    return views.batch_detail(record, handle.rows(), root_dir)


def _start_batch(notebook: Path, options: dict[str, Any], root_dir: str | None) -> dict[str, Any]:
    from cellship.runs.api import create

    handle = create(notebook, store=store(), warn=lambda _text: None, **options)
    handle.start_detached()
    return _batch_detail(handle.id, root_dir)


def _cancel_batch(batch_id: str, root_dir: str | None) -> dict[str, Any]:
    from cellship.runs.api import Batch

    Batch(store().get_batch(batch_id), store()).cancel()
    return _batch_detail(batch_id, root_dir)


class BatchesHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        limit = self.int_argument("limit", None, low=1, high=100_000)
        self.reply(await self.call(_batch_list, limit))

    @tornado.web.authenticated
    async def post(self) -> None:
        """Run a notebook of the Jupyter root as a batch (the notebook toolbar's button)."""
        body = self.body()
        notebook = body.get("notebook")
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise self.fail(400, "Give notebook: the path of an .ipynb file, relative to the "
                                 "Jupyter root.")
        if not self.root_dir:
            raise self.fail(409, "This Jupyter server has no file-system root to find notebooks in.")
        try:
            path = inside(self.root_dir, notebook)
        except PathRefused as err:
            raise self.fail(400, str(err)) from None
        options: dict[str, Any] = {}
        for key, kind in (("parameters", dict), ("grid", dict), ("parallel", int),
                          ("name", str), ("backend", str)):
            if body.get(key) is not None:
                if not isinstance(body[key], kind) or isinstance(body[key], bool):
                    raise self.fail(400, f"{key} must be a JSON {kind.__name__}.")
                options[key] = body[key]
        for name, values in options.get("grid", {}).items():
            if not isinstance(values, list) or not values:
                raise self.fail(400, f"grid.{name} must be a non-empty list of values.")
        self.reply(await self.call(_start_batch, path, options, self.root_dir), status=201)


class BatchHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self, batch_id: str) -> None:
        self.reply(await self.call(_batch_detail, batch_id, self.root_dir))


class BatchCancelHandler(CellshipHandler):
    @tornado.web.authenticated
    async def post(self, batch_id: str) -> None:
        self.reply(await self.call(_cancel_batch, batch_id, self.root_dir))


def _models(name: str | None, root_dir: str | None) -> dict[str, Any]:
    from cellship.serve.export import get_model, list_models

    if name is not None:
        get_model(name)  # ModelNotFound (404) with the models there are
    versions = list_models(name)
    return {"models": [views.model_version(v, root_dir) for v in versions], "count": len(versions)}


class ModelsHandler(CellshipHandler):
    """Exported models in the model repository (``cellship export``), every version."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(_models, None, self.root_dir))


class ModelHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        self.reply(await self.call(_models, name, self.root_dir))


class NotFoundHandler(CellshipHandler):
    """Anything else under /cellship/api/: a JSON 404, not Jupyter's HTML page."""

    @tornado.web.authenticated
    def get(self, path: str) -> None:
        raise self.fail(404, f"No cellship endpoint /cellship/api/{path}.")

    post = delete = get
