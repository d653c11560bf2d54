"""What every handler of ``/cellship/api/`` shares: the base class, the store and backends
it reads, and the path guard.

Every handler is ``@tornado.web.authenticated`` like any Jupyter endpoint (no token, no
cookie: 403), answers JSON, and reports every error as ``{"code", "message"}`` through
:meth:`CellshipHandler.write_error`: a :class:`~cellship.errors.CellshipError` becomes a 4xx
carrying its sentence (JobNotFound: 404 naming the id). Anything that may block (SQLite,
cancel waiting for processes, TensorBoard starting, event files) runs in a worker thread
via :meth:`CellshipHandler.call`, never on the tornado loop.

The endpoints that belong to no resource live here too: the version probe the panel sends
first, and the JSON 404 for anything else.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler

from cellship import __version__
from cellship.errors import CellshipError, JobNotFound, ModelNotFound, PathRefused, UsageError
from cellship.store import Store
from cellship.train.api import Job
from cellship.train.backend import Backend
from cellship.train.backends import get_backend

API_VERSION = 1
CAPABILITIES = ("jobs", "logs", "metrics", "tensorboard", "batches", "models")

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


class NotFoundHandler(CellshipHandler):
    """Anything else under /cellship/api/: a JSON 404, not Jupyter's HTML page."""

    @tornado.web.authenticated
    def get(self, path: str) -> None:
        raise self.fail(404, f"No cellship endpoint /cellship/api/{path}.")

    post = delete = get
