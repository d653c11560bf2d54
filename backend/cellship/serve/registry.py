"""The registry of running ``cellship serve`` servers: ``cellship home/serving/servers.json``.

Like the TensorBoard registry (and through its locked, atomically rewritten JSON file,
:func:`cellship.watch.tensorboard.registry.registry`): each ``cellship serve`` process
records itself once it listens and removes itself when it drains or exits; whoever reads
the registry next drops entries whose process is gone, or whose pid now belongs to
something that is not a ``cellship serve`` (pids are reused). The CLI
(``cellship servers``), a kernel and the Jupyter server's panel all read the same file.
"""

from __future__ import annotations

import atexit
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import psutil

from cellship import paths
from cellship.errors import CellshipError
from cellship.processes import pid_alive
from cellship.watch.tensorboard.registry import registry

STOP_TIMEOUT_SECONDS = 60.0  # a drain answers what is in flight: give it time before SIGKILL


class ServerNotFound(CellshipError):
    """No running ``cellship serve`` matches the pid or port the user gave."""


@dataclass(frozen=True)
class ServeServer:
    """One running ``cellship serve`` process, as the registry keeps it."""

    pid: int
    host: str
    port: int
    grpc_port: int | None
    url: str
    models: tuple[str, ...]
    repository: Mapping[str, str]  # model name -> directory it is served from
    started: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"models": list(self.models), "repository": dict(self.repository)}


def root() -> Path:
    path = paths.home() / "serving"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _server_of(entry: Mapping[str, Any]) -> ServeServer:
    grpc = entry.get("grpc_port")
    return ServeServer(pid=int(entry["pid"]), host=str(entry["host"]), port=int(entry["port"]),
                       grpc_port=None if grpc is None else int(grpc), url=str(entry["url"]),
                       models=tuple(str(m) for m in entry.get("models", ())),
                       repository={str(k): str(v) for k, v in (entry.get("repository") or {}).items()},
                       started=float(entry["started"]))


def is_cellship_serve(pid: int) -> bool:
    """Whether ``pid`` runs ``cellship serve`` (``python -m cellship.cli serve ...`` or the
    ``cellship serve`` script): its command line says so, not only its pid."""
    try:
        args = psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return False  # another user's process: not one this user may stop
    for i, arg in enumerate(args[:-1]):
        if args[i + 1] == "serve" and (arg == "cellship.cli" or os.path.basename(arg) == "cellship"):
            return True
    return False


def _alive(entry: Mapping[str, Any]) -> bool:
    pid = int(entry["pid"])
    return pid_alive(pid) and is_cellship_serve(pid)


def record(*, host: str, port: int, grpc_port: int | None, url: str,
           models: Mapping[str, str | Path]) -> ServeServer:
    """Add this process (a ``cellship serve`` that now listens) to the registry; it is
    removed again at exit (``atexit``) or by :func:`forget` on the drain path."""
    server = ServeServer(pid=os.getpid(), host=host, port=port, grpc_port=grpc_port, url=url,
                         models=tuple(models), repository={n: str(p) for n, p in models.items()},
                         started=time.time())
    with registry(root()) as entries:
        entries[:] = [e for e in entries if int(e["pid"]) != server.pid and _alive(e)]
        entries.append(server.to_dict())
    atexit.register(forget, server.pid)
    return server


def forget(pid: int) -> None:
    """Remove ``pid``'s entry (idempotent; never raises, it runs at exit)."""
    try:
        with registry(root()) as entries:
            entries[:] = [e for e in entries if int(e["pid"]) != pid]
    except OSError:
        pass


def running() -> list[ServeServer]:
    """Every live ``cellship serve`` of this CELLSHIP_HOME, oldest first (dead ones are
    pruned from the registry as a side effect)."""
    with registry(root()) as entries:
        entries[:] = [e for e in entries if _alive(e)]
        return [_server_of(e) for e in entries]


def find(ref: int | str) -> ServeServer:
    """The running server whose pid, or REST or gRPC port, is ``ref``."""
    try:
        number = int(ref)
    except (TypeError, ValueError):
        raise ServerNotFound(f"Give a server's pid or port (a number), got {ref!r}.") from None
    servers = running()
    for server in servers:
        if server.pid == number:
            return server
    for server in servers:
        if number in (server.port, server.grpc_port):
            return server
    there = (", ".join(f"pid {s.pid} on port {s.port}" for s in servers) if servers
             else "none are running")
    raise ServerNotFound(f"No running cellship serve has pid or port {number} ({there}); "
                         "list them with `cellship servers`.")


def stop(server: ServeServer | int | str, timeout: float = STOP_TIMEOUT_SECONDS) -> ServeServer:
    """Stop a server: SIGTERM (it drains: answers what is in flight, then exits), SIGKILL
    after ``timeout``; only if its pid still runs ``cellship serve``. Returns the server."""
    found = server if isinstance(server, ServeServer) else find(server)
    if not (pid_alive(found.pid) and is_cellship_serve(found.pid)):
        forget(found.pid)
        raise ServerNotFound(f"Process {found.pid} is no longer a cellship serve (it exited); "
                             "it is removed from the registry.")
    try:
        process = psutil.Process(found.pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    except psutil.NoSuchProcess:
        pass  # gone meanwhile: what was asked
    forget(found.pid)
    return found


def table(servers: list[ServeServer]) -> str:
    """``cellship servers``'s table."""
    if not servers:
        return "no cellship serve running: `cellship serve MODEL` starts one"
    rows = [("PID", "URL", "GRPC", "MODELS", "STARTED")]
    rows += [(str(s.pid), s.url, "-" if s.grpc_port is None else str(s.grpc_port),
              ", ".join(s.models), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started)))
             for s in servers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
