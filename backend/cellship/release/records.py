"""Who releases, and the release history as ``cellship releases MODEL`` prints it."""

from __future__ import annotations

import datetime as _dt
import getpass
import os
from typing import Sequence

from cellship.store import ReleaseRecord


def who() -> str:
    """The person releasing: the JupyterHub user when there is one (a hub's single-user
    servers all run as one OS user), else the OS user."""
    hub = os.environ.get("JUPYTERHUB_USER")
    if hub:
        return hub
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers): the uid is all there is
        return f"uid {os.getuid()}"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _gates(record: ReleaseRecord) -> str:
    if not record.gates:
        return "-"
    parts = []
    for gate in record.gates:
        value = "-" if gate.get("value") is None else f"{gate['value']:.4g}"
        parts.append(f"{gate['gate']} [{value}{'' if gate.get('passed') else ' FAIL'}]")
    return "; ".join(parts)


def _params(record: ReleaseRecord) -> str:
    return ", ".join(f"{k}={v}" for k, v in record.parameters.items()) or "-"


def _version(record: ReleaseRecord) -> str:
    if record.kind == "rollback":
        return f"{record.previous}->{record.version}"
    return "-" if record.version is None else str(record.version)


def table(records: Sequence[ReleaseRecord]) -> str:
    """One line per release or rollback, oldest first."""
    if not records:
        return "no releases"
    rows = [("ID", "VERSION", "OUTCOME", "STEP", "WHEN", "WHO", "NOTEBOOK", "PARAMETERS", "IMAGE",
             "GATES")]
    for r in records:
        notebook = os.path.basename(r.notebook) if r.notebook else "-"
        outcome = r.outcome if r.kind == "release" else "rollback"
        digest = str(r.details.get("digest") or "-")[:19]  # sha256: and 12 hex digits
        rows.append((r.id, _version(r), outcome, r.failed_step or "-", _when(r.started), r.user,
                     notebook, _params(r), digest, _gates(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1]))
                     + "  " + row[-1] for row in rows).rstrip()


def reasons(records: Sequence[ReleaseRecord]) -> str:
    """Why each release that did not promote stopped, one line each; an interrupted one
    says how to finish it."""
    lines = []
    for r in records:
        if not r.reason:
            continue
        line = f"{r.id}: {r.failed_step or r.outcome}: {r.reason.splitlines()[0]}"
        if r.outcome == "interrupted":
            line += (f" (interrupted at step {r.failed_step or 'run'}; `cellship release --resume "
                     f"{r.model}` or `cellship rollback {r.model}` finishes it: its staged "
                     "version is moved aside)")
        lines.append(line)
    return "\n".join(lines)
