"""The HTTP face: TensorFlow Serving's REST API v1 on aiohttp, plus health and metrics.

Why aiohttp: one well-kept dependency that is both the server and (for the benchmark) a
client, with a C HTTP parser, lingering close (a client that sent too large a body still
reads our 413 instead of a connection reset) and a request size limit; on uvloop, where
installed, it answers several thousand small requests per second on one core.

Routes (TF Serving's, so existing clients work unchanged):
    GET  /v1/models/M[/versions/V]              model_version_status
    GET  /v1/models/M[/versions/V]/metadata     signature_def map
    POST /v1/models/M[/versions/V]:predict      instances -> predictions, inputs -> outputs
    POST /v1/models/M[/versions/V]:classify     examples -> results (where the signature can)
    POST /v1/models/M[/versions/V]:regress      examples -> results (where the signature can)
    GET  /healthz                               200 once every model has a version, else 503
    GET  /metrics, /monitoring/prometheus/metrics   Prometheus text
    /v2/...                                     the Open Inference Protocol (openinference.rest)
Every error is ``{"error": "..."}`` with the status saying whose fault it was.

gRPC (TF Serving's PredictionService and ModelService, and the Open Inference Protocol's
GRPCInferenceService) runs on the same event loop when ``grpc_port`` is set
(``grpc_server``). Every protocol answers through :meth:`ModelServer.run_signature`: the
same batchers, the same time limit, the same drain gate.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, TypeVar

from aiohttp import web

from cellship.serve.batching import BatchingConfig
from cellship.serve.codec.responses import dumps, error_body
from cellship.serve.drain import DrainGate
from cellship.serve.errors import RequestError, bad_request, not_found

if TYPE_CHECKING:
    from cellship.serve.repository import VersionState
    from cellship.serve.signatures import Signature

_MODEL_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]*)|/labels/(?P<label>[^/:]*))?"
                         r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]*))?/?$")
VERBS = ("predict", "classify", "regress")
JSON = "application/json"
T = TypeVar("T")
# Probes and scrapes are answered while draining: they are how the drain is seen.
_ALWAYS_ANSWERED = ("/healthz", "/metrics", "/monitoring/prometheus/metrics", "/v2/health/live",
                    "/v2/health/ready", "/")


@dataclass(frozen=True)
class ServingConfig:
    """How ``cellship serve`` runs; every field is a command-line option."""

    host: str = "127.0.0.1"  # this machine only, unless told otherwise
    port: int = 8501  # 0: any free port
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    max_body_bytes: int = 64 * 1024 * 1024
    poll_interval_s: float = 1.0  # how often new versions are looked for
    max_versions: int = 0  # serve only the newest N versions (0: all on disk)
    intra_op_threads: int = 0  # TensorFlow threads per op (0: TensorFlow's default, all cores)
    inter_op_threads: int = 0  # TensorFlow ops run at once (0: TensorFlow's default)
    shutdown_timeout_s: float = 30.0  # in-flight requests get this long to finish on stop
    request_timeout_s: float = 60.0  # a model call that takes longer answers 504 (0: no limit)
    drain_grace_s: float = 0.0  # after SIGTERM, keep answering new requests this long
    grpc_port: int | None = None  # gRPC's port (TF Serving: 8500); 0: any free one; None: off


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


class ModelServer:
    """One server: the repository of loaded versions, the aiohttp app, the metrics."""

    def __init__(self, models: Mapping[str, str | Path], config: ServingConfig = ServingConfig(),
                 log: Callable[[str], None] | None = None) -> None:
        from cellship.serve.prometheus import ServingMetrics
        from cellship.serve.repository import Repository

        self.config = config
        self.metrics = ServingMetrics()
        self._log = log or (lambda text: print(f"cellship: {text}", file=sys.stderr, flush=True))
        threads = max(2, config.batching.batch_threads)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cellship-run")
        self.repository = Repository({n: Path(p) for n, p in models.items()}, config.batching,
                                     self._executor, max_versions=config.max_versions,
                                     on_batch=self.metrics.observe_batch, log=self._log)
        self.gate = DrainGate()
        self._runner: web.AppRunner | None = None
        self._grpc: Any = None
        self.port: int | None = None
        self.grpc_port: int | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            shown = "127.0.0.1"
        return f"http://{shown}:{self.port}"

    @property
    def grpc_target(self) -> str | None:
        """``host:port`` for a gRPC channel, or None when gRPC is off."""
        if self.grpc_port is None:
            return None
        return self.url.split("//", 1)[1].rsplit(":", 1)[0] + f":{self.grpc_port}"

    # -- lifecycle --------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes,
                              middlewares=[self._errors])
        from cellship.serve.openinference.rest import add_v2_routes

        app.router.add_route("*", "/v1/models/{tail:.*}", self._models)
        add_v2_routes(app, self)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/monitoring/prometheus/metrics", self._metrics)
        app.router.add_get("/", self._index)
        return app

    async def start(self) -> None:
        """Bind the port and start loading models (``/healthz`` says when they are ready)."""
        sock = _bind(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=self.config.shutdown_timeout_s)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, backlog=1024).start()
        if self.config.grpc_port is not None:
            from cellship.errors import MissingDependency
            from cellship.serve.grpc_server import start_grpc

            try:
                self._grpc, self.grpc_port = await start_grpc(self, self.config.host,
                                                               self.config.grpc_port)
            except MissingDependency as err:
                self._log(str(err))
        self.repository.start(self.config.poll_interval_s)

    async def drain_and_stop(self) -> None:
        """SIGTERM's path (see :mod:`cellship.serve.drain`): readiness false, the grace
        period, refusals with 503, in-flight requests finished, then :meth:`stop`."""
        grace = self.config.drain_grace_s
        self._log(f"draining: readiness is false; new requests are answered for {grace:g} s more, "
                  f"then refused with 503; {self.gate.in_flight} in flight" if grace else
                  f"draining: readiness is false, new requests get 503; "
                  f"{self.gate.in_flight} in flight")
        left = await self.gate.drain(grace, self.config.shutdown_timeout_s)
        if left:
            self._log(f"{left} requests were still in flight after {self.config.shutdown_timeout_s:g} s "
                      "(the shutdown timeout); stopping anyway")
        await self.stop()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, unload everything."""
        if self._grpc is not None:
            await self._grpc.stop(grace=self.config.shutdown_timeout_s)
            self._grpc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.repository.close()
        self._executor.shutdown(wait=True)

    # -- middleware ---------------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            if request.path in _ALWAYS_ANSWERED:
                return await handler(request)
            with self.gate.request():
                return await handler(request)
        except RequestError as err:
            return _error(err.status, str(err))
        except web.HTTPRequestEntityTooLarge:
            return _error(413, self._too_large(None))
        except web.HTTPException as err:
            if err.status == 404:
                return _error(404, f"No such endpoint: {request.method} {request.path}. This "
                                   "server answers /v1/models/NAME[/versions/N][/metadata|:predict"
                                   "|:classify|:regress], /v2/models/NAME[/versions/N][/ready|"
                                   "/infer], /v2/health/live|ready, /healthz and /metrics.")
            if err.status == 405:
                return _error(405, f"{request.method} is not allowed on {request.path}.")
            return _error(err.status, err.reason or "HTTP error")
        except Exception as err:
            traceback.print_exc()
            return _error(500, f"Internal error while answering {request.method} {request.path}: "
                               f"{type(err).__name__}: {err}")

    def _too_large(self, length: int | None) -> str:
        size = f" is {_mb(length)}" if length is not None else " is too large"
        return (f"The request body{size}; this server accepts at most "
                f"{_mb(self.config.max_body_bytes)} (cellship serve --max-request-bytes).")

    # -- the one path every protocol runs a model through -----------------------------------------
    async def run_signature(self, name: str, state: "VersionState", signature: "Signature",
                            tensors: Mapping[str, Any], rows: int | None) -> dict[str, Any]:
        """Outputs of one request: through the signature's batcher when it can batch
        (``rows``), else alone on a worker thread; 504 past the request time limit."""
        if rows is not None:
            batcher = self.repository.batcher(state, name, signature.info.key)
            call: Awaitable[dict[str, Any]] = batcher.submit(tensors, rows)
        else:
            call = asyncio.get_running_loop().run_in_executor(self._executor, signature.run, tensors)
        limit = self.config.request_timeout_s
        if not limit:
            return await call
        try:
            return await asyncio.wait_for(call, limit)
        except asyncio.TimeoutError:
            raise RequestError(
                f"Model {name} version {state.version} did not answer within {limit:g} s (the "
                "request time limit, cellship serve --request-timeout); the model call may be "
                "hung or the server overloaded. Retry later, or raise the limit.", 504) from None

    async def measured(self, name: str, verb: str, answer: Callable[[], Awaitable[T]]) -> T:
        """Run ``answer`` and count it in the request metrics by its outcome."""
        started = time.perf_counter()
        code = 200
        try:
            return await answer()
        except RequestError as err:
            code = err.status
            raise
        except asyncio.CancelledError:
            code = 499  # the client went away before its answer was ready
            raise
        except BaseException:
            code = 500
            raise
        finally:
            self.metrics.observe_request(name if name in self.repository.models else "", verb,
                                         code, time.perf_counter() - started)

    # -- handlers -------------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.StreamResponse:
        match = _MODEL_PATH.match(request.match_info["tail"])
        if match is None:
            raise not_found(f"No such endpoint: {request.path}. Use /v1/models/NAME"
                            "[/versions/N][/metadata|:predict|:classify|:regress].")
        name, verb = match["name"], match["verb"]
        if match["label"] is not None:
            raise not_found(f"Version labels are not configured on this server; name a version "
                            f"(/v1/models/{name}/versions/N) or none for the newest.")
        version = _version(match["version"])
        if verb is not None:
            if verb not in VERBS:
                raise not_found(f"Unknown method :{verb}; use :predict, :classify or :regress.")
            if request.method != "POST":
                return _error(405, f":{verb} takes POST, not {request.method}.")
            return await self._infer(request, name, version, verb)
        if request.method != "GET":
            return _error(405, f"{request.method} is not allowed on {request.path}; use GET "
                               "(or POST to :predict, :classify, :regress).")
        model = self.repository.model(name)
        if match["metadata"]:
            state = model.resolve(version)
            return _json({"model_spec": {"name": name, "signature_name": "",
                                         "version": str(state.version)},
                          "metadata": {"signature_def": {
                              "signature_def": state.loaded().signature_defs_json}}})
        if version is not None:
            state_or_none = model.versions.get(version)
            if state_or_none is None:
                raise not_found(f"Servable not found for request: Specific({name}, {version}); "
                                f"versions: {', '.join(map(str, sorted(model.versions))) or 'none'}.")
            return _json({"model_version_status": [state_or_none.status_json()]})
        if not model.versions:
            raise not_found(f"Could not find any versions of model {name} in {model.base}.")
        # TF Serving's answer, plus KServe's v1 readiness shape ({"name", "ready"}), which
        # KServe's InferenceRESTClient.is_model_ready reads from this same URL.
        return _json({"model_version_status": [s.status_json() for _, s in
                                               sorted(model.versions.items(), reverse=True)],
                      "name": name, "ready": bool(model.available()) and self.gate.ready})

    async def _infer(self, request: web.Request, name: str, version: int | None,
                     verb: str) -> web.StreamResponse:
        from cellship.serve.signatures import prepare

        async def answer() -> web.StreamResponse:
            state = self.repository.model(name).resolve(version)
            body = await self._body(request)
            prepared = prepare(state.loaded(), verb, body)
            outputs = await self.run_signature(name, state, prepared.signature, prepared.tensors,
                                               prepared.rows)
            return web.Response(body=prepared.respond(outputs), content_type=JSON)

        return await self.measured(name, verb, answer)

    async def body(self, request: web.Request) -> bytes:
        """The request body, or 413 past the size limit (for the v2 routes too)."""
        return await self._body(request)

    async def _body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            raise RequestError(self._too_large(length), 413)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RequestError(self._too_large(None), 413) from None

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        models = {}
        for name, model in self.repository.models.items():
            entry: dict[str, Any] = {"available_versions": model.available()}
            errors = {str(v): s.error for v, s in model.versions.items() if s.error}
            if errors:
                entry["errors"] = errors
            models[name] = entry
        ready = self.ready()
        status = "draining" if not self.gate.ready else "ready" if ready else "loading"
        return _json({"status": status, "models": models}, status=200 if ready else 503)

    def ready(self) -> bool:
        """Readiness, as every protocol's probe reports it: every model has a version
        available and no drain has begun."""
        return self.gate.ready and self.repository.ready()

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        queued = lambda: sum(b.queued_rows for m in self.repository.models.values()  # noqa: E731
                             for s in m.versions.values() for b in s.batchers.values())
        versions = {n: len(m.available()) for n, m in self.repository.models.items()}
        return web.Response(body=self.metrics.render(queued, versions),
                            headers={"Content-Type": self.metrics.content_type})

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return _json({"status": "alive",  # KServe's v1 liveness probe reads this
                      "models": {n: f"/v1/models/{n}" for n in self.repository.models},
                      "health": "/healthz", "metrics": "/metrics", "v2": "/v2",
                      "grpc": self.grpc_target})


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise bad_request(f"The version in the URL must be a number, got {text!r}.")
    return int(text)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(payload), status=status, content_type=JSON)


def _error(status: int, message: str) -> web.Response:
    return web.Response(body=error_body(message), status=status, content_type=JSON)


def _bind(host: str, port: int) -> socket.socket:
    from cellship.errors import UsageError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise UsageError(f"Cannot serve on host {host!r}: {err.strerror}.") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        hint = " (another server uses it: pick another with --port, or --port 0 for any free one)" \
            if err.errno in (98, 48) else ""
        raise UsageError(f"Cannot listen on {host}:{port}: {err.strerror}{hint}.") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where installed (about twice the requests per second), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve_forever(models: Mapping[str, str | Path], config: ServingConfig,
                  announce: Callable[[ModelServer], None]) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (``cellship serve``)."""
    import signal

    from cellship.serve import registry, signatures  # import TensorFlow on the main thread, before binding

    signatures.configure_threads(config.intra_op_threads, config.inter_op_threads)

    async def main() -> None:
        server = ModelServer(models, config)
        await server.start()
        assert server.port is not None
        try:  # for `cellship servers` and the panel; a pod's read-only home has none
            registry.record(host=config.host, port=server.port, grpc_port=server.grpc_port,
                            url=server.url, models=models)
        except OSError as err:
            server._log(f"not listed in the registry of running servers ({err})")
        announce(server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            registry.forget(os.getpid())  # draining: no longer one to send work to
            server._log("stopping: answering the requests in flight, then exiting")
            await server.drain_and_stop()

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


class BackgroundServer:
    """A server on a thread of this process (tests, the benchmark, a notebook cell)::

        with BackgroundServer({"digits": path}, ServingConfig(port=0)) as server:
            server.wait_ready()
            urllib.request.urlopen(server.url + "/v1/models/digits")
    """

    def __init__(self, models: Mapping[str, str | Path], config: ServingConfig = ServingConfig(),
                 log: Callable[[str], None] | None = None) -> None:
        self.server = ModelServer(models, config, log=log)
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cellship-serve",
                                        daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "BackgroundServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self

    def wait_ready(self, timeout: float = 60.0) -> "BackgroundServer":
        end = time.monotonic() + timeout
        while not self.server.repository.ready():
            if time.monotonic() > end:
                states = {n: {v: (s.state, s.error) for v, s in m.versions.items()}
                          for n, m in self.server.repository.models.items()}
                raise TimeoutError(f"models not ready after {timeout} s: {states}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
