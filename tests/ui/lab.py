"""A real JupyterLab (with cellship's server and lab extensions, as installed) on
127.0.0.1 and headless Debian chromium driven by Playwright for Python. Used by the UI
tests and by benchmarks/panel_list.py.

Chromium is the system's (`apt-get install chromium`): Playwright's own browser download
is never used (`playwright install` cannot work here).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CHROMIUM = os.environ.get("CELLSHIP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Lab:
    url: str        # http://127.0.0.1:PORT/
    token: str
    root: Path      # the Jupyter root (notebooks live here)
    home: Path      # CELLSHIP_HOME of the server and its kernels (inside the root)
    log: Path

    def page_url(self, path: str = "lab") -> str:
        """A page of the lab with the token, in a fresh workspace (``reset``): what one
        test left open does not show up in the next."""
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}reset&token={self.token}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing_prerequisites() -> str | None:
    """Why a browser test cannot run here (None when it can)."""
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (`make system-deps` installs Debian's)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    labext = Path(sys.prefix) / "share/jupyter/labextensions/cellship/package.json"
    if not labext.exists():
        return f"the cellship labextension is not installed ({labext} missing; pip install -e .)"
    return None


@contextlib.contextmanager
def running_lab(root: Path) -> Iterator[Lab]:
    """``jupyter lab`` serving ``root`` with a token, its settings and workspaces kept in
    ``root/.lab`` (nothing of the user's leaks in), stopped (with its kernels) on exit."""
    root.mkdir(parents=True, exist_ok=True)
    home = root / "cellship-home"
    home.mkdir(exist_ok=True)
    private = root / ".lab"
    for sub in ("settings", "workspaces", "runtime"):
        (private / sub).mkdir(parents=True, exist_ok=True)
    news = private / "settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no news toast
    tracker = private / "settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text('{"autoStartDefaultKernel": true}')  # no "Select Kernel" dialog
    token = secrets.token_hex(16)
    port = _free_port()
    env = dict(os.environ, CELLSHIP_HOME=str(home), JUPYTER_RUNTIME_DIR=str(private / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(private / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(private / "workspaces"), PYTHONUNBUFFERED="1")
    log = private / "lab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.terminals_enabled=False", "--ServerApp.allow_root=True"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    lab = Lab(url=f"http://127.0.0.1:{port}/", token=token, root=root, home=home, log=log)
    try:
        _wait_ready(proc, lab)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _wait_ready(proc: subprocess.Popen, lab: Lab) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{lab.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}cellship/api/version?token={lab.token}", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer in {READY_TIMEOUT:g} s:\n{lab.log.read_text()[-3000:]}")


@contextlib.contextmanager
def browser() -> Iterator[object]:
    """A headless Debian chromium under Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def open_panel(page: object) -> None:
    """Show the cellship panel (click its left-sidebar tab unless it is open already) and
    wait until it is ready."""
    tab = page.locator('.jp-SideBar [data-id="cellship-panel"]')
    tab.wait_for(timeout=30_000)
    if not page.locator("#cellship-panel").is_visible():
        tab.click()
    page.wait_for_selector('#cellship-panel[data-state="ready"]', timeout=30_000)


def put_settings(lab: Lab, plugin: str, settings: dict) -> None:
    """A plugin's user settings (``cellship:plugin``, ...) through JupyterLab's settings
    API; a page loaded afterwards reads them."""
    import json

    request = urllib.request.Request(
        f"{lab.url}lab/api/settings/{plugin}", method="PUT",
        data=json.dumps({"raw": json.dumps(settings)}).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status in (200, 204), answer.status
