"""``cellship serve`` as a child of this process, for a notebook or a script::

    with start_server("digits") as server:          # waits until /healthz says ready
        urllib.request.urlopen(server.model_url("digits") + ":predict", body)

Why a child process and not a thread: the server imports TensorFlow and keeps cores busy
under load; a kernel stays responsive and light, and ``stop()`` (or the end of the
``with``) ends it for sure. It dies with the thread that started it (PR_SET_PDEATHSIG),
so a kernel that is restarted or killed leaves no server behind.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cellship.errors import CellshipError
from cellship.paths import home
from cellship.processes import die_with_parent


class ServerFailed(CellshipError):
    """A ``cellship serve`` child did not come up, or stopped on its own."""


@dataclass
class ServerProcess:
    url: str
    models: tuple[str, ...]
    process: subprocess.Popen
    log_path: Path
    grpc_target: str | None = None  # ``host:port`` of its gRPC port (None: gRPC is off)

    @property
    def pid(self) -> int:
        return self.process.pid

    def model_url(self, name: str, version: int | None = None) -> str:
        """``http://HOST:PORT/v1/models/NAME[/versions/N]``: append ``:predict`` etc."""
        return f"{self.url}/v1/models/{name}" + (f"/versions/{version}" if version else "")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the server answers what is in flight, then exits), SIGKILL after
        ``timeout``. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.process.returncode}"
        return f"<cellship server {', '.join(self.models)} at {self.url} (pid {self.pid}, {state})>"


def start_server(*models: str, port: int = 0, host: str = "127.0.0.1",
                 args: Sequence[str] = (), ready_timeout: float = 120.0) -> ServerProcess:
    """Start ``cellship serve MODEL... --port PORT --host HOST [args]`` and wait until every
    model answers. ``port=0`` picks a free port; ``server.url`` says which."""
    if not models:
        raise ServerFailed("start_server() needs at least one model name or SavedModel path.")
    logs = home() / "serving"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"serve-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    command = [sys.executable, "-m", "cellship.cli", "serve", *models, "--port", str(port),
               "--host", host, *args]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log,
                                   stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
                                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    server = ServerProcess("", tuple(models), process, log_path)
    try:
        server.url = _first_line(server, ready_timeout)
        _wait_ready(server, ready_timeout)
        server.grpc_target = _grpc_target(server)
    except BaseException:
        server.stop(timeout=5)
        raise
    return server


def _first_line(server: ServerProcess, timeout: float) -> str:
    assert server.process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(server.process.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if selector.select(timeout=0.2):
            line = server.process.stdout.readline().decode().strip()
            if line.startswith("http"):
                return line
        if server.process.poll() is not None:
            raise ServerFailed(f"`cellship serve {' '.join(server.models)}` exited with code "
                               f"{server.process.returncode}:\n{server.log_tail()}")
    raise ServerFailed(f"`cellship serve` did not start listening within {timeout:.0f} s; its "
                       f"log ({server.log_path}):\n{server.log_tail()}")


def _grpc_target(server: ServerProcess) -> str | None:
    import json

    with urllib.request.urlopen(server.url + "/", timeout=10) as response:
        return json.loads(response.read()).get("grpc")


def _wait_ready(server: ServerProcess, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as err:
            if err.code != 503:  # 503: still loading
                raise ServerFailed(f"{server.url}/healthz answered {err.code}") from None
        except OSError:
            pass
        if server.process.poll() is not None:
            raise ServerFailed(f"`cellship serve` exited with code {server.process.returncode}:\n"
                               f"{server.log_tail()}")
        time.sleep(0.1)
    raise ServerFailed(f"The models were not ready within {timeout:.0f} s; the server's log "
                       f"({server.log_path}):\n{server.log_tail()}")
