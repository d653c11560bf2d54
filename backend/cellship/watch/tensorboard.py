"""Real TensorBoard servers over jobs' logdirs: start, reuse, stop, and never leak them.

Named ``tensorboard_server`` (not ``tensorboard``) so that running a file from inside this
package directory, or a tool that puts it on ``sys.path``, can never shadow the real
``tensorboard`` package.

How a server is made (why each piece is there):

- The real ``tensorboard`` runs as a child process, in its own process group, so one
  ``killpg`` also ends the Rust data server it starts. With ``parent_bound`` it also gets
  PR_SET_PDEATHSIG: a kernel killed with SIGKILL takes its servers with it, and an
  ``atexit`` hook stops them on an ordinary exit.
- Several jobs are shown side by side as named runs (``digits/train``, ``mnist/train``).
  Instead of ``--logdir_spec name:dir,...`` (which makes TensorBoard fall back to its slow
  Python-only loader: no data server, "some features may not work"), each server gets a
  symlink tree ``NAME -> job logdir`` and plain ``--logdir TREE``, the layout TensorBoard's
  own help recommends. A logdir that does not exist yet is a dangling link that TensorBoard
  picks up once the job creates it.
- A JSON registry under ``cellship home/tensorboard/servers.json`` (guarded by ``flock``)
  records every server, so a second ``%job ID tensorboard`` reuses the first server, and
  servers whose process or owner died are cleaned up by whoever looks next.

Nothing here imports IPython or TensorFlow; the magic and the CLI are thin layers over
:func:`open_tensorboard`.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from cellship import paths
from cellship.errors import BackendError, MissingDependency, UsageError
from cellship.processes import die_with_parent, pid_alive

__all__ = ["TensorBoardServer", "start", "stop", "stop_all", "running", "open_tensorboard",
           "job_logdirs", "normalize_run_name", "tensorboard_command", "is_alive", "log_tail"]

REGISTRY_VERSION = 1
RELOAD_INTERVAL_SECONDS = 2
KILL_GRACE_SECONDS = 5.0  # TensorBoard needs ~3 s to run its atexit handlers on SIGTERM
POLL_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 2.0
PORT_ATTEMPTS = 3
_BIND_FAILURE = "could not bind to port"
_RUN_NAME_EXTRA_CHARS = "._-=+@"
_STATE_DIR_NAME = re.compile(r"\d+-[0-9a-f]{8}")  # PORT-RANDOM, see _launch


@dataclass(frozen=True)
class TensorBoardServer:
    """One running TensorBoard. ``logdirs`` are (run name, directory) pairs; ``owner_pid``
    is the process it dies with (None when it outlives its starter)."""

    pid: int
    port: int
    host: str
    logdirs: tuple[tuple[str, str], ...]
    started: float
    owner_pid: int | None = None
    log_path: str | None = None

    @property
    def url(self) -> str:
        """Where a browser on this machine reaches it."""
        return f"http://{_url_host(self.host)}:{self.port}/"

    def proxied_url(self) -> str:
        """The URL a browser elsewhere should use: ``$TENSORBOARD_PROXY_URL`` with
        ``%PORT%`` replaced (the convention of TensorBoard's own notebook integration, e.g.
        ``/user/alice/proxy/%PORT%/`` behind jupyter-server-proxy), else :attr:`url`."""
        template = os.environ.get("TENSORBOARD_PROXY_URL")
        if not template:
            return self.url
        return template.replace("%PORT%", str(self.port))


# -- validation ------------------------------------------------------------------------
def normalize_run_name(name: str) -> str:
    """A run name that is safe as one path component of the symlink tree and reads well in
    TensorBoard: letters, digits and ``._-=+@`` are kept, anything else (``/``, ``:``,
    ``,``, spaces) becomes ``_``; leading dots are dropped (no ``.``/``..``, no hidden runs)."""
    text = "".join(ch if ch.isalnum() or ch in _RUN_NAME_EXTRA_CHARS else "_"
                   for ch in str(name).strip()).lstrip(".")
    if not text:
        raise UsageError(f"{name!r} cannot name a TensorBoard run; use letters, digits or "
                         f"{_RUN_NAME_EXTRA_CHARS}.")
    return text


def _normalize_logdirs(logdirs: Mapping[str, str | Path]) -> tuple[tuple[str, str], ...]:
    """(name, absolute path) pairs sorted by name; a name clash after normalising or a
    path that is a file is a UsageError. Missing directories are fine."""
    if not logdirs:
        raise UsageError("Give at least one logdir to show in TensorBoard.")
    pairs: dict[str, str] = {}
    for raw_name, raw_path in logdirs.items():
        name = normalize_run_name(raw_name)
        text = os.fspath(raw_path)
        if "://" in text:
            raise UsageError(f"TensorBoard logdir {text!r} is not a local directory; cellship "
                             "shows local logdirs only (copy the event files here first).")
        path = Path(os.path.abspath(Path(text).expanduser()))  # normalised: registry key
        if path.exists() and not path.is_dir():
            raise UsageError(f"TensorBoard logdir {path} is a file, not a directory; give the "
                             "directory that holds the event files.")
        if name in pairs:
            raise UsageError(f"Two logdirs would both be shown as run {name!r} ({pairs[name]} "
                             f"and {path}); give them different names.")
        pairs[name] = str(path)
    return tuple(sorted(pairs.items()))


def tensorboard_command() -> list[str]:
    """How to run TensorBoard from this Python environment: the console script next to
    ``sys.executable`` (so a kernel uses its own venv's TensorBoard, not one on PATH), else
    ``python -m tensorboard.main``."""
    script = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    if importlib.util.find_spec("tensorboard") is not None:
        return [sys.executable, "-m", "tensorboard.main"]
    raise MissingDependency(f"TensorBoard is not installed in this Python environment "
                            f"({sys.executable}); install it with `pip install tensorboard` "
                            "(or `pip install 'cellship[tensorboard]'`) and try again.")


# -- processes -------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _group_members(pgid: int) -> list[int]:
    """Live processes of a process group (TensorBoard and its data server)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X") and fields[2] == str(pgid):
                members.append(int(entry.name))
    return members


def _is_our_tensorboard(pid: int, port: int) -> bool:
    """Whether ``pid`` is still the TensorBoard we registered (pids are reused): its
    command line says tensorboard and ``--port PORT``."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid
    return any("tensorboard" in a for a in args) and any(
        a == "--port" and b == str(port) for a, b in zip(args, args[1:]))


@dataclass
class _Child:
    """A server this process started: its Popen (so it is reaped, never a zombie) and where
    it is registered (CELLSHIP_HOME may change later, e.g. between tests)."""

    proc: subprocess.Popen
    port: int
    root: Path
    state_dir: Path
    parent_bound: bool
    creator: int  # os.getpid() at start: a forked child must not stop its parent's servers


_CHILDREN: dict[int, _Child] = {}
_CHILDREN_LOCK = threading.Lock()


def _reap(pid: int) -> None:
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
    if child is not None and child.proc.poll() is not None:
        with _CHILDREN_LOCK:
            _CHILDREN.pop(pid, None)


def _ours(pid: int, port: int) -> bool:
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
    if child is not None and child.port == port and child.proc.returncode is None:
        return True  # even as an unreaped zombie, its group may still hold the data server
    return _is_our_tensorboard(pid, port)


def _terminate(targets: Sequence[tuple[int, int]], grace: float = KILL_GRACE_SECONDS) -> None:
    """Stop every (pid, port) server: SIGTERM to its process group (TensorBoard removes its
    own bookkeeping), SIGKILL to what is left after ``grace``, then wait until the group,
    data server included, is gone."""
    groups = [pid for pid, port in targets if _ours(pid, port)]
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while True:
        for pgid in groups:
            _reap(pgid)
        left = [g for g in groups if _group_members(g)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pgid in left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5.0
    while left and time.monotonic() < deadline:
        for pgid in left:
            _reap(pgid)
        left = [g for g in left if _group_members(g)]
        time.sleep(0.05)
    for pid, port in targets:
        if pid in groups or not pid_alive(pid):
            _remove_tensorboard_info(pid, port)


def _remove_tensorboard_info(pid: int, port: int) -> None:
    """TensorBoard's own record of a server (for its ``%tensorboard`` magic), which it
    cannot remove when SIGKILL or PDEATHSIG ends it."""
    path = Path(tempfile.gettempdir(), ".tensorboard-info", f"pid-{pid}.info")
    try:
        if json.loads(path.read_text()).get("port") == port:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


# -- the registry ----------------------------------------------------------------------
def _root() -> Path:
    path = paths.home() / "tensorboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _registry(root: Path | None = None) -> Iterator[list[dict[str, Any]]]:
    """The registry's entries, locked against other processes and threads; changes made to
    the list are written back (atomically) on exit."""
    root = root or _root()
    with open(root / "servers.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / "servers.json"
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


def _server_of(entry: Mapping[str, Any]) -> TensorBoardServer:
    return TensorBoardServer(pid=int(entry["pid"]), port=int(entry["port"]), host=entry["host"],
                             logdirs=tuple((str(n), str(p)) for n, p in entry["logdirs"]),
                             started=float(entry["started"]), owner_pid=entry.get("owner_pid"),
                             log_path=entry.get("log"))


def _entry_of(server: TensorBoardServer, state_dir: Path) -> dict[str, Any]:
    return {"pid": server.pid, "port": server.port, "host": server.host,
            "logdirs": [list(pair) for pair in server.logdirs], "started": server.started,
            "owner_pid": server.owner_pid, "dir": str(state_dir), "log": server.log_path}


def _probe(host: str, port: int, data_location: str | None = None,
           timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether a TensorBoard answers on host:port (and, if given, serves that logdir, so a
    port reused by another server does not count)."""
    url = f"http://{_url_host(host)}:{port}/data/environment"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read().decode())
    except (OSError, ValueError):
        return False
    return data_location is None or body.get("data_location") == data_location


def _tree(entry: Mapping[str, Any]) -> str:
    return str(Path(entry["dir"]) / "logdir")


def _entry_alive(entry: Mapping[str, Any], probe: bool = False) -> bool:
    server = _server_of(entry)
    if not (pid_alive(server.pid) and _is_our_tensorboard(server.pid, server.port)):
        return False
    if server.owner_pid is not None and not pid_alive(server.owner_pid):
        return False  # it should have died with its owner; treat it as stale and stop it
    return not probe or _probe(server.host, server.port, _tree(entry))


def _clean(entries: list[dict[str, Any]]) -> None:
    """Drop entries whose server is gone or whose owner died (stopping what is left)."""
    stale = [e for e in entries if not _entry_alive(e)]
    if not stale:
        return
    _terminate([(int(e["pid"]), int(e["port"])) for e in stale], grace=1.0)
    for entry in stale:
        entries.remove(entry)
        _remove_state_dir(entry.get("dir"))


def _remove_state_dir(state_dir: str | Path | None) -> None:
    """Remove a server's symlink tree and log. rmtree unlinks symlinks without following
    them, so the jobs' logdirs are never touched."""
    path = Path(state_dir) if state_dir else None
    if path and path.parent.name == "tensorboard" and _STATE_DIR_NAME.fullmatch(path.name):
        shutil.rmtree(path, ignore_errors=True)


def running() -> list[TensorBoardServer]:
    """Every live TensorBoard cellship started on this machine (for this CELLSHIP_HOME)."""
    with _registry() as entries:
        _clean(entries)
        return [_server_of(e) for e in entries]


def is_alive(server: TensorBoardServer) -> bool:
    """Whether the server's process still runs (cheap; does not ask its port)."""
    _reap(server.pid)
    return pid_alive(server.pid) and _is_our_tensorboard(server.pid, server.port)


def log_tail(server: TensorBoardServer, lines: int = 20) -> str:
    """The last lines of TensorBoard's own output (for error messages)."""
    return _tail(server.log_path, lines)


def _tail(path: str | Path | None, lines: int = 20) -> str:
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


# -- starting and stopping -------------------------------------------------------------
def _url_host(host: str) -> str:
    """A host a client can connect to: wildcards become loopback; IPv6 gets brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_busy(host: str, port: int) -> bool:
    """Whether binding host:port fails the way TensorBoard's would (it also sets
    SO_REUSEADDR, so a port in TIME_WAIT is not busy)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return True
            raise UsageError(f"Cannot serve TensorBoard on {host}:{port}: {err.strerror}; "
                             "check --host and --port.") from None
    return False


def _busy_port_error(host: str, port: int) -> UsageError:
    return UsageError(f"Port {port} on {host} is already in use; pick another with --port, or "
                      "leave --port out to use a free one.")


def _forget(root: Path, pid: int, port: int) -> list[dict[str, Any]]:
    """Remove a server's entries from the registry at ``root``; returns them."""
    try:
        with _registry(root) as entries:
            gone = [e for e in entries if int(e["pid"]) == pid and int(e["port"]) == port]
            for entry in gone:
                entries.remove(entry)
    except OSError:
        return []
    return gone


def _stop_owned() -> None:
    """atexit: stop the parent-bound servers this process started (all at once: each needs
    a few seconds to exit). PDEATHSIG covers the exits that skip atexit."""
    with _CHILDREN_LOCK:
        mine = [(pid, c) for pid, c in _CHILDREN.items()
                if c.parent_bound and c.creator == os.getpid()]
    for pid, child in mine:
        _forget(child.root, pid, child.port)
    _terminate([(pid, child.port) for pid, child in mine])
    for _, child in mine:
        _remove_state_dir(child.state_dir)


atexit.register(_stop_owned)


def _find_reusable(entries: list[dict[str, Any]], logdirs: tuple[tuple[str, str], ...],
                   host: str, port: int | None) -> TensorBoardServer | None:
    """A live server with exactly these logdirs that this process may share: one it owns,
    or one bound to no process (a server bound to another kernel would vanish with it)."""
    for entry in entries:
        server = _server_of(entry)
        if (server.logdirs == logdirs and server.host == host
                and (port is None or server.port == port)
                and server.owner_pid in (None, os.getpid())
                and _entry_alive(entry, probe=True)):
            return server
    return None


def start(logdirs: Mapping[str, str | Path], *, host: str = "127.0.0.1", port: int | None = None,
          reuse: bool = True, timeout: float = 90.0, parent_bound: bool = True) -> TensorBoardServer:
    """Start (or, with ``reuse``, find) a TensorBoard showing each logdir as a named run.

    ``logdirs`` maps run names to directories (which may not exist yet). ``port=None``
    picks a free port. With ``parent_bound`` the server dies with this process (atexit,
    plus PDEATHSIG when it is killed); without it, it runs until :func:`stop`. Returns
    once TensorBoard answers HTTP; on failure raises BackendError with its log's tail.
    """
    pairs = _normalize_logdirs(logdirs)
    command = tensorboard_command()
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {port}.")
    with _registry() as entries:
        _clean(entries)
        if reuse:
            found = _find_reusable(entries, pairs, host, port)
            if found is not None:
                return found
    if port is not None and _port_busy(host, port):
        raise _busy_port_error(host, port)
    for _ in range(1 if port is not None else PORT_ATTEMPTS):
        chosen = port if port is not None else _free_port(host)
        server = _launch(command, pairs, host, chosen, timeout, parent_bound)
        if server is not None:
            return server
    if port is not None:  # taken between our check and TensorBoard's bind
        raise _busy_port_error(host, port)
    raise BackendError(f"TensorBoard could not bind a free port on {host} after "
                       f"{PORT_ATTEMPTS} tries; something is taking ports as fast as they are "
                       "freed. Try again, or give one with --port.")


def _launch(command: list[str], pairs: tuple[tuple[str, str], ...], host: str, port: int,
            timeout: float, parent_bound: bool) -> TensorBoardServer | None:
    """One attempt on one port; None if the port was taken meanwhile (the caller retries)."""
    root = _root()
    state_dir = root / f"{port}-{secrets.token_hex(4)}"
    tree = state_dir / "logdir"
    tree.mkdir(parents=True)
    for name, path in pairs:
        (tree / name).symlink_to(path, target_is_directory=True)
    log_path = state_dir / "tensorboard.log"
    args = command + ["--logdir", str(tree), "--host", host, "--port", str(port),
                      "--reload_interval", str(RELOAD_INTERVAL_SECONDS),
                      "--window_title", "cellship: " + ", ".join(n for n, _ in pairs)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep the log's tail about TensorBoard
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent if parent_bound else None)
        except OSError as err:
            _remove_state_dir(str(state_dir))
            raise BackendError(f"Could not run TensorBoard ({args[0]}): {err.strerror}; check "
                               "that `tensorboard --version` works in this environment.") from None
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = _Child(proc, port, root, state_dir, parent_bound, os.getpid())
    server = TensorBoardServer(pid=proc.pid, port=port, host=host, logdirs=pairs,
                               started=time.time(), owner_pid=os.getpid() if parent_bound else None,
                               log_path=str(log_path))
    try:
        ready = _wait_ready(proc, server, str(tree), timeout)
    except BaseException:
        _terminate([(proc.pid, port)], grace=1.0)
        _remove_state_dir(str(state_dir))
        raise
    if not ready:  # lost the port to someone else between choosing and binding it
        _terminate([(proc.pid, port)], grace=1.0)
        _remove_state_dir(str(state_dir))
        return None
    with _registry(root) as entries:
        entries.append(_entry_of(server, state_dir))
    return server


def _wait_ready(proc: subprocess.Popen, server: TensorBoardServer, tree: str,
                timeout: float) -> bool:
    """Poll until TensorBoard answers; False if it failed to bind its port; BackendError
    with its log's tail if it exited otherwise or did not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            tail = _tail(server.log_path)
            if _BIND_FAILURE in tail:
                return False
            raise BackendError(f"TensorBoard exited with code {code} before it answered; its "
                               f"last lines (full log: {server.log_path}):\n{tail}")
        if _probe(server.host, server.port, tree, timeout=1.0):
            return True
        if time.monotonic() > deadline:
            raise BackendError(f"TensorBoard did not answer on port {server.port} within "
                               f"{timeout:g} s (a busy machine may need a larger timeout); its "
                               f"last lines:\n{_tail(server.log_path)}")
        time.sleep(POLL_SECONDS)


def stop(server: TensorBoardServer) -> None:
    """Stop a server (TensorBoard and its data server) and forget it. Stopping one that is
    already gone is fine."""
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(server.pid)
    root = child.root if child is not None and child.port == server.port else _root()
    gone = _forget(root, server.pid, server.port)
    _terminate([(server.pid, server.port)])
    for entry in gone:
        _remove_state_dir(entry.get("dir"))


def stop_all() -> list[TensorBoardServer]:
    """Stop every server in the registry, whichever process started it; returns them."""
    with _registry() as entries:
        taken = list(entries)
        entries.clear()
    _terminate([(int(e["pid"]), int(e["port"])) for e in taken])
    for entry in taken:
        _remove_state_dir(entry.get("dir"))
    return [_server_of(e) for e in taken]


# -- jobs ------------------------------------------------------------------------------
def job_logdirs(jobs: Sequence[Any]) -> dict[str, str]:
    """Run name -> logdir for jobs (anything with ``id``, ``name``, ``logdir``): run names
    are the jobs' names, with the id appended where two jobs share a name; a job given
    twice is shown once."""
    unique = list({job.id: job for job in jobs}.values())
    names = [normalize_run_name(job.name) for job in unique]
    out: dict[str, str] = {}
    for job, name in zip(unique, names):
        key = name if names.count(name) == 1 else f"{name}-{normalize_run_name(job.id)}"
        out[key] = str(job.logdir)
    return out


def open_tensorboard(refs: Sequence[str], port: int | None = None, host: str = "127.0.0.1",
                     reuse: bool = True) -> TensorBoardServer:
    """Start or reuse a TensorBoard over the logdirs of the jobs ``refs`` name (ids, id
    prefixes or unique names), bound to this process. ``%job ID tensorboard`` and
    ``cellship tensorboard JOB...`` call this."""
    from cellship.train import api

    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise UsageError("Name at least one job to show in TensorBoard; `cellship jobs` lists them.")
    jobs = [api.get_job(ref) for ref in refs]
    return start(job_logdirs(jobs), host=host, port=port, reuse=reuse)
