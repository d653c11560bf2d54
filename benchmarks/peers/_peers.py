"""Where setup.sh put each peer's venv, and what is in it (the benchmarks print both)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"


class PeerMissing(RuntimeError):
    """The peer's venv is not built (run benchmarks/peers/setup.sh) or its install failed."""


def peers_home() -> Path:
    return Path(os.environ.get("CELLSHIP_PEERS_HOME", Path.home() / ".cache/cellship/peers"))


def pins(peer: str) -> list[str]:
    """The requirement lines of ``requirements/<peer>.txt`` (comments and blanks dropped)."""
    text = (REQUIREMENTS / f"{peer}.txt").read_text()
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def venv(peer: str) -> Path:
    """The same path setup.sh computes: ``<home>/<peer>-<first 12 hex of sha256(file)>``."""
    digest = hashlib.sha256((REQUIREMENTS / f"{peer}.txt").read_bytes()).hexdigest()[:12]
    path = peers_home() / f"{peer}-{digest}"
    if not (path / ".complete").exists():
        log = peers_home() / f"{peer}-{digest}.log"
        tail = "\n".join(log.read_text().splitlines()[-5:]) if log.exists() else "(never built)"
        raise PeerMissing(f"no built venv for {peer} at {path}: run bash benchmarks/peers/setup.sh {peer}\n{tail}")
    return path


def versions(peer: str, names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` in the peer's venv (from setup.sh's pip freeze)."""
    freeze = (venv(peer) / "freeze.txt").read_text().splitlines()
    found = {}
    for line in freeze:
        name, _, version = line.partition("==")
        if name.lower().replace("_", "-") in names:
            found[name.lower().replace("_", "-")] = version
    return found


def python(peer: str) -> str:
    return str(venv(peer) / "bin" / "python")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (Ray and BentoML serve from
    child processes)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def git_describe() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
