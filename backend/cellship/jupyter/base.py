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
from urllib.parse import parse_qsl, urlencode

import tornado.web
from jupyter_server.base.handlers import APIHandler

from cellship import __version__
from cellship.errors import CellshipError, JobNotFound, ModelNotFound, PathRefused, UsageError
from cellship.store import Store
from cellship.train.api import Job
from cellship.train.backend import Backend
from cellship.train.backends import get_backend

API_VERSION = 1
SQLITE_MAX_INT = 2**63 - 1  # the largest integer SQLite stores or compares
CAPABILITIES = ("jobs", "logs", "metrics", "tensorboard", "batches", "models", "servers",
                "deployments", "cluster_jobs", "events", "releases")

T = TypeVar("T")


def status_of(err: CellshipError) -> int:
    """The HTTP status a cellship error maps to: not found 404 (a job, model, server,
    deployment or Kubernetes object), Kubernetes' Forbidden 403, bad input 400, anything
    else (cancelling a finished job, deleting a running one, a backend refusing) 409."""
    from cellship.deployment.errors import DeploymentNotFound
    from cellship.kube.errors import KubernetesForbidden, KubernetesNotFound
    from cellship.serve.registry import ServerNotFound

    if isinstance(err, (JobNotFound, ModelNotFound, DeploymentNotFound, KubernetesNotFound,
                        ServerNotFound)):
        return 404
    if isinstance(err, KubernetesForbidden):
        return 403  # RBAC's refusal, with the verb, resource and namespace in the sentence
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


SECRET_PARAMETERS = frozenset({"token", "_xsrf", "access_token"})


def scrub_uri(uri: str) -> str:
    """``uri`` with the values of credential query parameters replaced: what may be
    logged. (Jupyter scrubs its access log, but tornado's warning for each 4xx prints
    the raw URI: ``?token=`` ended up in the server's log.)"""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = parse_qsl(query, keep_blank_values=True)
    return path + "?" + urlencode([(k, "[secret]" if k.lower() in SECRET_PARAMETERS else v)
                                   for k, v in pairs], safe="[]")


class CellshipHandler(APIHandler):
    """Base: JSON errors, the store, and blocking work off the event loop."""

    def _request_summary(self) -> str:
        """What tornado's log lines name the request by, with credentials scrubbed."""
        return f"{self.request.method} {scrub_uri(self.request.uri or '')} ({self.request.remote_ip})"

    async def prepare(self) -> None:  # type: ignore[override]
        """Authentication before anything else. ``@tornado.web.authenticated`` guards each
        method, but a method a handler does not define (PUT, PATCH) would answer 405 to
        anyone; here every request without the token or login cookie is refused (403)
        whatever its method, so an unauthenticated caller learns nothing of the API.
        Jupyter's own prepare has already checked the XSRF token of mutating requests."""
        await super().prepare()
        if self.current_user is None:
            raise self.fail(403, "Forbidden: authenticate with the Jupyter server's token "
                                 "(header Authorization: token TOKEN) or its login cookie.")

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

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in a worker thread; a CellshipError becomes its 4xx."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
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
                     high: int = SQLITE_MAX_INT) -> int | None:
        """Query parameter ``name`` as a whole number in ``low..high`` (400 otherwise). The
        bound defaults to SQLite's largest integer: a bigger one cannot reach a query
        (``?offset=99999999999999999999`` was a 500, an OverflowError in sqlite3)."""
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.fail(400, f"Query parameter {name} must be a whole number, got {raw!r}.") from None
        if value < low or value > high:
            raise self.fail(400, f"Query parameter {name} must be between {low} and {high}, "
                                 f"got {value}.")
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
