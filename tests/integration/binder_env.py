"""The Binder demo's environment, built the way repo2docker builds it, cached on disk.

repo2docker, for a repository with a ``binder/`` folder and no ``environment.yml``: a fresh
Python of ``binder/runtime.txt``'s version, ``pip install -r binder/requirements.txt``, then
``binder/postBuild`` executed from the repository's root with that environment's ``pip``
first on ``PATH``. This module does the same into a venv under ``~/.cache/cellship``.

What is cached, and why it stays honest: the venv is keyed by everything that decides what
lands in it except the checkout itself: the Python version, binder/'s files (not its README)
and pyproject's ``[build-system]``, ``[project*]`` and ``[tool.hatch*]`` tables
(dependencies, entry points, the labextension's shared data). A change to any of those
builds it afresh (cold: a new venv, the requirements, then postBuild). ``binder/postBuild``
itself runs on every use, warm or cold, from the checkout under test: its ``pip install
-e .`` points the venv's editable cellship at THIS checkout (CI clones afresh each time; a
venv still pointing at an older clone would test that clone) and copies this checkout's
built labextension into the venv; a postBuild that no longer succeeds fails every run. Warm,
postBuild is pip finding the requirements installed plus one editable build (its JS build
skipped while ``backend/cellship/labextension`` is built, as after ``make setup``).
``CELLSHIP_BINDER_FRESH=1`` forces a cold build (new upstream releases of unpinned
requirements are otherwise seen only when a key input changes).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINDER = REPO / "binder"
CACHE = Path.home() / ".cache" / "cellship"


class BinderBuildError(RuntimeError):
    """A step of the Binder build failed; the message carries the step's output tail."""


@dataclass(frozen=True)
class BinderEnv:
    root: Path
    cold: bool           # built from nothing by this call
    build_seconds: float  # venv + requirements (0 when warm)
    postbuild_seconds: float

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(self.root, **extra)


def runtime_version() -> str:
    """``3.11`` from ``binder/runtime.txt`` (``python-3.11``), the Python Binder builds with."""
    text = (BINDER / "runtime.txt").read_text().strip()
    if not text.startswith("python-"):
        raise BinderBuildError(f"binder/runtime.txt should read python-X.Y, not {text!r}")
    return text.removeprefix("python-")


def base_python(version: str) -> str | None:
    """An interpreter of ``version`` (not a venv's), or None where this machine has none."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return getattr(sys, "_base_executable", sys.executable)
    return shutil.which(f"python{version}")


def cache_key(python: str) -> str:
    version = subprocess.run([python, "-c", "import platform, sys; print(sys.version, platform.machine())"],
                             capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(version.encode())
    digest.update(install_tables((REPO / "pyproject.toml").read_text()).encode())
    for path in sorted(p for p in BINDER.rglob("*") if p.is_file() and p.suffix != ".md"):
        digest.update(f"\0{path.relative_to(BINDER)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def install_tables(pyproject: str) -> str:
    """The text of pyproject's tables that decide what ``pip install -e .`` installs:
    ``[build-system]``, ``[project]`` and ``[project.*]``, ``[tool.hatch.*]`` (line-based, not
    parsed: tomllib is 3.11+; a comment edited there costs one cold build, no more)."""
    kept, keep = [], False
    for line in pyproject.splitlines():
        if line.startswith("["):
            table = line.strip("[] ")
            keep = table in ("build-system", "project") or table.startswith(("project.", "tool.hatch."))
        if keep:
            kept.append(line)
    return "\n".join(kept)


def clean_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a Binder container's shell, as near as a test gets: the venv's
    ``bin`` first on PATH, nothing of the test run's own venv or Jupyter paths. The
    machine's pip settings (PIP_*: its package index) pass through."""
    keep = {k: v for k, v in os.environ.items()
            if k.startswith(("PIP_", "LC_", "LANG", "CELLSHIP_HOME")) or k in ("HOME", "USER", "TMPDIR", "TERM")}
    return {**keep, "PATH": f"{root / 'bin'}:/usr/local/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(root),
            "PYTHONNOUSERSITE": "1", **extra}


def _run(step: str, args: list[str], root: Path, timeout: float) -> None:
    try:
        result = subprocess.run(args, cwd=REPO, env=clean_env(root), capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise BinderBuildError(f"{step} took over {timeout:.0f} s") from err
    except OSError as err:  # e.g. postBuild not executable: repo2docker could not run it either
        raise BinderBuildError(f"{step} could not be started: {err}") from err
    if result.returncode != 0:
        raise BinderBuildError(f"{step} exited {result.returncode}:\n"
                               f"{(result.stdout + result.stderr)[-4000:]}")


def run_postbuild(root: Path) -> float:
    """``binder/postBuild`` from the repository's root, as repo2docker runs it (executed
    directly: it must be executable and name its interpreter). Returns its seconds."""
    start = time.monotonic()
    _run("binder/postBuild", [str(BINDER / "postBuild")], root, timeout=900)
    return time.monotonic() - start


def binder_env(python: str) -> BinderEnv:
    """The Binder venv for this checkout: built if this machine has none for the current
    inputs, then postBuild run into it from this checkout."""
    key = cache_key(python)
    root = CACHE / f"binder-{key}"
    done = root / ".complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"binder-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and reuse
        cold = not done.exists() or os.environ.get("CELLSHIP_BINDER_FRESH") == "1"
        build_seconds = 0.0
        if cold:
            start = time.monotonic()
            shutil.rmtree(root, ignore_errors=True)
            _run("python -m venv", [python, "-m", "venv", str(root)], root, timeout=300)
            # pip's cache is used here (repo2docker passes --no-cache-dir, which changes
            # what is downloaded, not what is installed)
            _run("pip install -r binder/requirements.txt",
                 [str(root / "bin" / "pip"), "install", "-q", "-r", str(BINDER / "requirements.txt")],
                 root, timeout=1800)
            build_seconds = time.monotonic() - start
        # a failure leaves a cold build unmarked (built afresh next time); a warm venv keeps
        # its mark: its key inputs are unchanged and the next run's postBuild redoes its part
        postbuild_seconds = run_postbuild(root)
        done.write_text(f"{key}\n")
    return BinderEnv(root, cold, build_seconds, postbuild_seconds)
