"""What a TensorBoard server is (the record every other module passes around) and what it
may show: run names safe as one path component, local logdirs only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cellship.errors import UsageError

_RUN_NAME_EXTRA_CHARS = "._-=+@"


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
        return f"http://{url_host(self.host)}:{self.port}/"

    def proxied_url(self) -> str:
        """The URL a browser elsewhere should use: ``$TENSORBOARD_PROXY_URL`` with
        ``%PORT%`` replaced (the convention of TensorBoard's own notebook integration, e.g.
        ``/user/alice/proxy/%PORT%/`` behind jupyter-server-proxy), else :attr:`url`."""
        template = os.environ.get("TENSORBOARD_PROXY_URL")
        if not template:
            return self.url
        return template.replace("%PORT%", str(self.port))


def url_host(host: str) -> str:
    """A host a client can connect to: wildcards become loopback; IPv6 gets brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


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


def normalize_logdirs(logdirs: Mapping[str, str | Path]) -> tuple[tuple[str, str], ...]:
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
