"""The registry of running servers: ``cellship home/tensorboard/servers.json``.

Why a file and not memory: a second kernel, the CLI and the Jupyter server must all find a
server the first one started (to reuse it, or to stop it), and whoever reads the registry
next cleans up after servers whose process or owner died. ``flock`` guards it against
other processes, and a rewrite is atomic (``os.replace``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from cellship import paths
from cellship.processes import pid_alive
from cellship.watch.tensorboard.processes import is_our_tensorboard, reap, terminate
from cellship.watch.tensorboard.server import TensorBoardServer, url_host

REGISTRY_VERSION = 1
PROBE_TIMEOUT_SECONDS = 2.0
_STATE_DIR_NAME = re.compile(r"\d+-[0-9a-f]{8}")  # PORT-RANDOM, see launch.launch_on


def root() -> Path:
    """This CELLSHIP_HOME's TensorBoard directory: the registry and each server's state."""
    path = paths.home() / "tensorboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def registry(at: Path | None = None) -> Iterator[list[dict[str, Any]]]:
    """The registry's entries, locked against other processes and threads; changes made to
    the list are written back (atomically) on exit."""
    at = at or root()
    with open(at / "servers.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = at / "servers.json"
        try:
            data = json.loads(path.read_text())
            entries = list(data.get("servers", [])) if data.get("version") == REGISTRY_VERSION else []
        except (OSError, ValueError, AttributeError):
            entries = []
        before = json.dumps(entries, sort_keys=True)
        yield entries
        if json.dumps(entries, sort_keys=True) != before:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            rows = "".join(f"\n  {json.dumps(e)}," for e in entries).rstrip(",")
            tmp.write_text(f'{{"version": {REGISTRY_VERSION}, "servers": [{rows}\n]}}\n')
            os.replace(tmp, path)


def server_of(entry: Mapping[str, Any]) -> TensorBoardServer:
    return TensorBoardServer(pid=int(entry["pid"]), port=int(entry["port"]), host=entry["host"],
                             logdirs=tuple((str(n), str(p)) for n, p in entry["logdirs"]),
                             started=float(entry["started"]), owner_pid=entry.get("owner_pid"),
                             log_path=entry.get("log"))


def entry_of(server: TensorBoardServer, state_dir: Path) -> dict[str, Any]:
    return {"pid": server.pid, "port": server.port, "host": server.host,
            "logdirs": [list(pair) for pair in server.logdirs], "started": server.started,
            "owner_pid": server.owner_pid, "dir": str(state_dir), "log": server.log_path}


def probe(host: str, port: int, data_location: str | None = None,
          timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether a TensorBoard answers on host:port (and, if given, serves that logdir, so a
    port reused by another server does not count)."""
    url = f"http://{url_host(host)}:{port}/data/environment"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read().decode())
    except (OSError, ValueError):
        return False
    return data_location is None or body.get("data_location") == data_location


def _tree(entry: Mapping[str, Any]) -> str:
    return str(Path(entry["dir"]) / "logdir")


def entry_alive(entry: Mapping[str, Any], check_port: bool = False) -> bool:
    """Whether an entry's server still runs (and, with ``check_port``, answers HTTP)."""
    server = server_of(entry)
    if not (pid_alive(server.pid) and is_our_tensorboard(server.pid, server.port)):
        return False
    if server.owner_pid is not None and not pid_alive(server.owner_pid):
        return False  # it should have died with its owner; treat it as stale and stop it
    return not check_port or probe(server.host, server.port, _tree(entry))


def clean(entries: list[dict[str, Any]]) -> None:
    """Drop entries whose server is gone or whose owner died (stopping what is left)."""
    stale = [e for e in entries if not entry_alive(e)]
    if not stale:
        return
    terminate([(int(e["pid"]), int(e["port"])) for e in stale], grace=1.0)
    for entry in stale:
        entries.remove(entry)
        remove_state_dir(entry.get("dir"))


def remove_state_dir(state_dir: str | Path | None) -> None:
    """Remove a server's symlink tree and log. rmtree unlinks symlinks without following
    them, so the jobs' logdirs are never touched."""
    path = Path(state_dir) if state_dir else None
    if path and path.parent.name == "tensorboard" and _STATE_DIR_NAME.fullmatch(path.name):
        shutil.rmtree(path, ignore_errors=True)


def forget(at: Path, pid: int, port: int) -> list[dict[str, Any]]:
    """Remove a server's entries from the registry at ``at``; returns them."""
    try:
        with registry(at) as entries:
            gone = [e for e in entries if int(e["pid"]) == pid and int(e["port"]) == port]
            for entry in gone:
                entries.remove(entry)
    except OSError:
        return []
    return gone


def find_reusable(entries: list[dict[str, Any]], logdirs: tuple[tuple[str, str], ...],
                  host: str, port: int | None) -> TensorBoardServer | None:
    """A live server with exactly these logdirs that this process may share: one it owns,
    or one bound to no process (a server bound to another kernel would vanish with it)."""
    for entry in entries:
        server = server_of(entry)
        if (server.logdirs == logdirs and server.host == host
                and (port is None or server.port == port)
                and server.owner_pid in (None, os.getpid())
                and entry_alive(entry, check_port=True)):
            return server
    return None


def running() -> list[TensorBoardServer]:
    """Every live TensorBoard cellship started on this machine (for this CELLSHIP_HOME)."""
    with registry() as entries:
        clean(entries)
        return [server_of(e) for e in entries]


def is_alive(server: TensorBoardServer) -> bool:
    """Whether the server's process still runs (cheap; does not ask its port)."""
    reap(server.pid)
    return pid_alive(server.pid) and is_our_tensorboard(server.pid, server.port)


def log_tail(server: TensorBoardServer, lines: int = 20) -> str:
    """The last lines of TensorBoard's own output (for error messages)."""
    return tail(server.log_path, lines)


def tail(path: str | Path | None, lines: int = 20) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
