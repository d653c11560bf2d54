"""Starting and stopping TensorBoard servers.

A start reuses a live server with the same logdirs where it may (see
:func:`cellship.watch.tensorboard.registry.find_reusable`), else launches one on a free
port (retrying when another process takes the port between our choice and TensorBoard's
bind) and returns only once it answers HTTP. Parent-bound servers stop with this process:
an ``atexit`` hook here, PR_SET_PDEATHSIG for the exits that skip it.
"""

from __future__ import annotations

import atexit
import errno
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from cellship.errors import BackendError, MissingDependency, UsageError
from cellship.processes import die_with_parent
from cellship.watch.tensorboard.processes import CHILDREN, CHILDREN_LOCK, Child, terminate
from cellship.watch.tensorboard.registry import (
    clean,
    entry_of,
    find_reusable,
    forget,
    probe,
    registry,
    remove_state_dir,
    root,
    server_of,
    tail,
)
from cellship.watch.tensorboard.server import TensorBoardServer, normalize_logdirs

RELOAD_INTERVAL_SECONDS = 2
POLL_SECONDS = 0.2
PORT_ATTEMPTS = 3
_BIND_FAILURE = "could not bind to port"


WITHOUT_TF = Path(__file__).with_name("main_without_tf.py")


def tensorboard_command() -> list[str]:
    """How to run TensorBoard from this Python environment (``sys.executable``'s, so a kernel
    uses its own venv's TensorBoard, not one on PATH): by default without importing
    TensorFlow (:mod:`main_without_tf`: a start in about 1 s instead of 7-11 s), or, with
    ``CELLSHIP_TENSORBOARD_TF=1``, the console script next to ``sys.executable`` (else
    ``python -m tensorboard.main``), which loads TensorFlow for the plugins that need it."""
    if importlib.util.find_spec("tensorboard") is None:
        raise MissingDependency(f"TensorBoard is not installed in this Python environment "
                                f"({sys.executable}); install it with `pip install tensorboard` "
                                "(or `pip install 'cellship[tensorboard]'`) and try again.")
    if os.environ.get("CELLSHIP_TENSORBOARD_TF", "") != "1":
        return [sys.executable, str(WITHOUT_TF)]
    script = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-m", "tensorboard.main"]


def free_port(host: str) -> int:
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


def _stop_owned() -> None:
    """atexit: stop the parent-bound servers this process started (all at once: each needs
    a few seconds to exit). PDEATHSIG covers the exits that skip atexit."""
    with CHILDREN_LOCK:
        mine = [(pid, c) for pid, c in CHILDREN.items()
                if c.parent_bound and c.creator == os.getpid()]
    for pid, child in mine:
        forget(child.root, pid, child.port)
    terminate([(pid, child.port) for pid, child in mine])
    for _, child in mine:
        remove_state_dir(child.state_dir)


atexit.register(_stop_owned)


def start(logdirs: Mapping[str, str | Path], *, host: str = "127.0.0.1", port: int | None = None,
          reuse: bool = True, timeout: float = 90.0, parent_bound: bool = True) -> TensorBoardServer:
    """Start (or, with ``reuse``, find) a TensorBoard showing each logdir as a named run.

    ``logdirs`` maps run names to directories (which may not exist yet). ``port=None``
    picks a free port. With ``parent_bound`` the server dies with this process (atexit,
    plus PDEATHSIG when it is killed); without it, it runs until :func:`stop`. Returns
    once TensorBoard answers HTTP; on failure raises BackendError with its log's tail.
    """
    pairs = normalize_logdirs(logdirs)
    command = tensorboard_command()
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {port}.")
    with registry() as entries:
        clean(entries)
        if reuse:
            found = find_reusable(entries, pairs, host, port)
            if found is not None:
                return found
    if port is not None and _port_busy(host, port):
        raise _busy_port_error(host, port)
    for _ in range(1 if port is not None else PORT_ATTEMPTS):
        chosen = port if port is not None else free_port(host)
        server = launch_on(command, pairs, host, chosen, timeout, parent_bound)
        if server is not None:
            return server
    if port is not None:  # taken between our check and TensorBoard's bind
        raise _busy_port_error(host, port)
    raise BackendError(f"TensorBoard could not bind a free port on {host} after "
                       f"{PORT_ATTEMPTS} tries; something is taking ports as fast as they are "
                       "freed. Try again, or give one with --port.")


def launch_on(command: list[str], pairs: tuple[tuple[str, str], ...], host: str, port: int,
              timeout: float, parent_bound: bool) -> TensorBoardServer | None:
    """One attempt on one port; None if the port was taken meanwhile (the caller retries)."""
    at = root()
    state_dir = at / f"{port}-{secrets.token_hex(4)}"
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
            remove_state_dir(str(state_dir))
            raise BackendError(f"Could not run TensorBoard ({args[0]}): {err.strerror}; check "
                               "that `tensorboard --version` works in this environment.") from None
    with CHILDREN_LOCK:
        CHILDREN[proc.pid] = Child(proc, port, at, state_dir, parent_bound, os.getpid())
    server = TensorBoardServer(pid=proc.pid, port=port, host=host, logdirs=pairs,
                               started=time.time(), owner_pid=os.getpid() if parent_bound else None,
                               log_path=str(log_path))
    try:
        ready = _wait_ready(proc, server, str(tree), timeout)
    except BaseException:
        terminate([(proc.pid, port)], grace=1.0)
        remove_state_dir(str(state_dir))
        raise
    if not ready:  # lost the port to someone else between choosing and binding it
        terminate([(proc.pid, port)], grace=1.0)
        remove_state_dir(str(state_dir))
        return None
    with registry(at) as entries:
        entries.append(entry_of(server, state_dir))
    return server


def _wait_ready(proc: subprocess.Popen, server: TensorBoardServer, tree: str,
                timeout: float) -> bool:
    """Poll until TensorBoard answers; False if it failed to bind its port; BackendError
    with its log's tail if it exited otherwise or did not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            last = tail(server.log_path)
            if _BIND_FAILURE in last:
                return False
            raise BackendError(f"TensorBoard exited with code {code} before it answered; its "
                               f"last lines (full log: {server.log_path}):\n{last}")
        if probe(server.host, server.port, tree, timeout=1.0):
            return True
        if time.monotonic() > deadline:
            raise BackendError(f"TensorBoard did not answer on port {server.port} within "
                               f"{timeout:g} s (a busy machine may need a larger timeout); its "
                               f"last lines:\n{tail(server.log_path)}")
        time.sleep(POLL_SECONDS)


def stop(server: TensorBoardServer) -> None:
    """Stop a server (TensorBoard and its data server) and forget it. Stopping one that is
    already gone is fine."""
    with CHILDREN_LOCK:
        child = CHILDREN.get(server.pid)
    at = child.root if child is not None and child.port == server.port else root()
    gone = forget(at, server.pid, server.port)
    terminate([(server.pid, server.port)])
    for entry in gone:
        remove_state_dir(entry.get("dir"))


def stop_all() -> list[TensorBoardServer]:
    """Stop every server in the registry, whichever process started it; returns them."""
    with registry() as entries:
        taken = list(entries)
        entries.clear()
    terminate([(int(e["pid"]), int(e["port"])) for e in taken])
    for entry in taken:
        remove_state_dir(entry.get("dir"))
    return [server_of(e) for e in taken]
