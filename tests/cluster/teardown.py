"""Teardown steps of the test cluster's nodes (``harness.LocalCluster`` and
``second_node.ExtraNode``): what a kubelet over containerd leaves on a machine, removed.

Every step finds its targets by what marks them as a node's own (a socket path in a
command line, a mount namespace, a cgroup name, an address on the node's subnet), so the
same steps clean a node this process started and one a killed session left; none raises.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

from tests.cluster.processes import kill, pids

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def kill_marked(markers: Iterable[str], also: bytes = b"") -> None:
    """SIGKILL every process whose command line holds one of ``markers`` (and ``also``,
    when given): containerd-shim-runc-v2 daemonizes away from its containerd, so a node's
    shims are found by its socket path."""
    needles = [m.encode() for m in markers]
    for pid in pids():
        line = cmdline(pid)
        if (not also or also in line) and any(n in line for n in needles):
            kill(pid)


def mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def kill_mount_namespace(namespace: str | None) -> None:
    """SIGKILL every process in the mount namespace ``namespace`` (``mnt:[inode]``): a
    node's containerd, kubelet, shims and the process holding the namespace."""
    if not namespace or namespace == mount_namespace(os.getpid()):
        return  # never our own
    for _ in range(3):
        found = [pid for pid in pids() if mount_namespace(pid) == namespace]
        if not found:
            return
        for pid in found:
            kill(pid)
        time.sleep(0.1)


def kill_containers(ctr: Callable[..., subprocess.CompletedProcess]) -> None:
    """SIGKILL and remove every task and container of a node's containerd (``ctr`` runs
    ``ctr -n k8s.io ARGS`` against it)."""
    for task in ctr("tasks", "ls", "-q", check=False).stdout.split():
        ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ctr("tasks", "ls", "-q", check=False).stdout.strip():
        for task in ctr("tasks", "ls", "-q", check=False).stdout.split():
            ctr("tasks", "rm", "-f", task, check=False)
        time.sleep(0.2)
    for container in ctr("containers", "ls", "-q", check=False).stdout.split():
        ctr("containers", "rm", container, check=False)


def unmount_under(*roots: Path) -> None:
    """Lazily unmount every mount at or below ``roots`` (deepest first)."""
    prefixes = tuple(str(r) + "/" for r in roots) + tuple(str(r) for r in roots)
    for _ in range(3):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        ours = sorted((m for m in mounts if m.startswith(prefixes) or m in prefixes),
                      key=len, reverse=True)
        if not ours:
            return
        for mount in ours:
            subprocess.run(["umount", "-l", mount], capture_output=True)


def remove_netns(address_prefix: str) -> None:
    """containerd's CRI names pod network namespaces ``cni-<uuid>`` under /run/netns: ours
    hold an address starting with ``address_prefix`` (or nothing at all: a dead pod's)."""
    netns = Path("/run/netns")
    if not netns.is_dir():
        return
    for entry in netns.iterdir():
        if not entry.name.startswith("cni-"):
            continue
        out = subprocess.run(["ip", "-n", entry.name, "-o", "addr"], capture_output=True,
                             text=True).stdout
        if address_prefix in out or "eth0" not in out:
            subprocess.run(["umount", str(entry)], capture_output=True)
            entry.unlink(missing_ok=True)


def hierarchies() -> list[Path]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers, named ones, and
    the unified one of a hybrid machine)."""
    if not CGROUP_ROOT.is_dir():
        return []
    return [h for h in CGROUP_ROOT.iterdir() if (h / "cgroup.procs").exists()]


def remove_cgroups(name: str, timeout: float = 10.0) -> None:
    """Kill every process in the cgroup ``/name`` (and below) in every hierarchy, then
    remove the cgroups, deepest first. The kubelet's cgroupfs driver makes ``kubepods`` (or
    ``<cgroup-root>/kubepods``) in every v1 hierarchy."""
    deadline = time.monotonic() + timeout
    for hierarchy in hierarchies():
        base = hierarchy / name
        if not base.is_dir():
            continue
        tree = sorted((p for p in base.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True) + [base]
        for directory in tree:
            while True:
                try:
                    members = (directory / "cgroup.procs").read_text().split()
                except OSError:
                    break
                if not members or time.monotonic() > deadline:
                    break
                for pid in members:
                    kill(int(pid))
                time.sleep(0.05)
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy while its last tasks exit
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
