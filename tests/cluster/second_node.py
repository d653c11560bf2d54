"""A second node for the test cluster, on the same machine: a kubelet and a containerd of
its own, named ``127.0.0.2``, for tests that lose a node (chaos tests).

What makes two kubelets on one machine possible (Kubernetes 1.20, containerd 1.6):

- Name and address: the kubelet's name is its address (``--hostname-override=127.0.0.2
  --address=127.0.0.2``, loopback), as node 1's is 127.0.0.1: the apiserver reaches a
  kubelet by Hostname (logs, exec), and that address is the node's InternalIP.
- Fixed paths: the kubelet always uses /var/lib/kubelet (device-plugins/, pki/, seccomp/),
  /var/log/pods and /var/log/containers whatever its ``--root-dir``; containerd and its
  shims /run/containerd (shim sockets, runc state), CNI /var/lib/cni (result cache) and
  containerd's pod network namespaces /run/netns. So node 2's containerd and kubelet run
  in ONE private mount namespace (a holder process made by ``unshare --mount
  --propagation private``; both are started in it with ``nsenter``) in which each of those
  paths is a bind mount of node 2's own directory. One namespace for both: the volumes the
  kubelet mounts for a pod must be visible to the containerd that starts its containers.
  Nothing mounted there shows on the host, and the namespace (with every mount in it)
  ends with its last process. Node 1's mounts copied into it at creation are unmounted
  there first (they would hold node 1's pods' volumes and network namespaces alive).
- cgroups: ``--cgroup-root=/cellship-node-2``, made in every hierarchy first: node 2's
  kubepods tree lives beside node 1's ``/kubepods``, and every container process of
  node 2 is found there (which is how :meth:`ExtraNode.stop` kills them all).
- Network: its own bridge ``cellshipk8s1`` with 10.77.1.0/24 (node.py's ``cni_conflist``:
  routes to the Services and to 10.77.0.0/16 via the node's gateway 10.77.1.1). The host
  routes between the two bridges, the one kube-proxy's iptables rules on the host serve
  Services for pods of both nodes, the cluster DNS and the apiserver are on 10.77.0.1.

Disk and power: node 2's "disk" (kubelet root, containerd root with its images, CNI IPAM
state) is under the cluster's work directory and survives :meth:`ExtraNode.stop`; its
"tmpfs" (containerd state and socket, under /run) does not, as on a machine that lost
power. :meth:`ExtraNode.start` after a stop is that machine booting again.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from tests.cluster.node import (
    PAUSE_REF,
    cni_conflist,
    containerd_config,
    kubelet_args,
    spawn,
)
from tests.cluster.processes import ClusterError, kill, pids, wait_alive
from tests.cluster.teardown import (
    cmdline,
    hierarchies,
    kill_marked,
    kill_mount_namespace,
    mount_namespace,
    remove_cgroups,
    unmount_under,
)

if TYPE_CHECKING:
    from tests.cluster.harness import LocalCluster

NAME = "127.0.0.2"
BRIDGE = "cellshipk8s1"
SUBNET = "10.77.1.0/24"
NODE_GATEWAY = "10.77.1.1"
CGROUP = "cellship-node-2"
HOLDER = "cellship-node-holder"
# Fixed paths of the kubelet, containerd, its shims and CNI that node 1 uses too, bound in
# node 2's mount namespace from its own directories: on its disk, or in its /run.
DISK_PATHS = ("/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/var/lib/cni")
RUN_PATHS = ("/run/containerd", "/run/netns")


class ExtraNode:
    """Node 2 of ``cluster``: :meth:`start` (boot or reboot), :meth:`stop` (power loss),
    :meth:`remove` (gone from the cluster and the machine)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.name = NAME
        self.dir = cluster.workdir / "node-2"
        self.run_dir = Path(f"{cluster.run_dir}-2")  # short: the socket path is < 108 bytes
        self.processes: dict[str, subprocess.Popen] = {}
        self.namespace: str | None = None  # "mnt:[inode]" of its mount namespace
        self.made_dirs: list[Path] = []  # mount points this node had to create on the host
        self.timings: dict[str, float] = {}  # of the last start, s: "boot" (all), "images"

    # -- paths ------------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io",
                               *args], capture_output=True, text=True, check=check)

    # -- boot ---------------------------------------------------------------------------------
    def start(self, images: Iterable[tuple[Path, str]] = (), timeout: float = 120.0) -> None:
        """Boot the node (again, after :meth:`stop`): containerd with the pause image and
        ``images`` ((archive, ref); imported once, they stay on its disk), then the kubelet;
        returns once the node is Ready."""
        if self.processes:
            raise ClusterError(f"node {self.name} is running already")
        started = time.monotonic()
        try:
            self._prepare()
            self._hold_namespace(timeout)
            self._spawn("containerd", ["containerd", "--config", str(self._containerd_config())])
            self._wait("containerd's socket", timeout,
                       lambda: self.ctr("version", check=False).returncode == 0, "containerd")
            began = time.monotonic()
            have = set(self.ctr("images", "ls", "-q").stdout.split())
            for archive, ref in [(self.cluster.workdir / "pause.tar", PAUSE_REF), *images]:
                if ref not in have:
                    self.import_image(archive, ref)
            self.timings["images"] = time.monotonic() - began
            self._spawn("kubelet", kubelet_args(
                self.cluster.binaries, self.cluster.workdir / "admin.kubeconfig",
                self.dir / "kubelet", self.socket, self.name) + [f"--cgroup-root=/{CGROUP}"])
            self._wait(f"node {self.name} to be Ready", timeout,
                       lambda: self.cluster.node_ready(self.name), "kubelet")
        except BaseException:
            self.stop()
            raise
        self.timings["boot"] = time.monotonic() - started

    def import_image(self, archive: Path, ref: str) -> None:
        result = self.ctr("images", "import", "--base-name", ref.rsplit(":", 1)[0],
                          str(archive), check=False)
        if result.returncode != 0:
            raise ClusterError(f"ctr images import {archive} into node {self.name} failed: "
                               f"{result.stderr.strip()}")

    def _prepare(self) -> None:
        """Directories, the bridge, the CNI config, the cgroup root; a fresh /run."""
        shutil.rmtree(self.run_dir, ignore_errors=True)  # tmpfs: empty after a power loss
        for directory in ("logs", "cni", "kubelet", "containerd", "cni-ipam"):
            (self.dir / directory).mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True)
        ip = ["ip"]
        if subprocess.run(ip + ["link", "show", BRIDGE], capture_output=True).returncode != 0:
            subprocess.run(ip + ["link", "add", BRIDGE, "type", "bridge"], check=True)
            subprocess.run(ip + ["addr", "add", f"{NODE_GATEWAY}/24", "dev", BRIDGE], check=True)
        subprocess.run(ip + ["link", "set", BRIDGE, "up"], check=True)
        (self.dir / "cni" / "10-cellship.conflist").write_text(
            cni_conflist(BRIDGE, SUBNET, NODE_GATEWAY, self.dir / "cni-ipam"))
        for hierarchy in hierarchies():
            root = hierarchy / CGROUP
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset has none: copy them
                if (root / name).exists() and not (root / name).read_text().strip():
                    (root / name).write_text((hierarchy / name).read_text())

    def _binds(self) -> list[tuple[Path, Path]]:
        """(node 2's directory, the fixed path it is mounted on) pairs."""
        pairs = [(self.dir / "fixed" / p.strip("/").replace("/", "-"), Path(p))
                 for p in DISK_PATHS]
        return pairs + [(self.run_dir / "fixed" / p.strip("/").replace("/", "-"), Path(p))
                        for p in RUN_PATHS]

    def _hold_namespace(self, timeout: float) -> None:
        """The holder: a process in a new private mount namespace, where node 1's mounts
        are gone and node 2's directories are bound on the fixed paths; then it sleeps."""
        node_one = [self.cluster.workdir, self.cluster.run_dir, *(t for _, t in self._binds())]
        cases = "|".join(f"{shlex.quote(str(p))}|{shlex.quote(str(p))}/*" for p in node_one)
        lines = ["set -e",
                 # sort -r: a mount's submounts come before it
                 f'while read -r _ m _; do case "$m" in {cases}) echo "$m";; esac; '
                 f'done < /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" || true; done']
        for source, target in self._binds():
            source.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                self.made_dirs.append(target)
            lines.append(f"mkdir -p {shlex.quote(str(target))}")
            lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
        ready = self.run_dir / "holder.ready"
        lines.append(f": > {shlex.quote(str(ready))}")
        lines.append(f"exec -a {shlex.quote(f'{HOLDER} {self.dir}')} sleep infinity")
        self._spawn("holder", ["unshare", "--mount", "--propagation", "private", "--",
                               "bash", "-c", "\n".join(lines)])
        self._wait("its mount namespace", timeout, ready.exists, "holder")
        self.namespace = mount_namespace(self.processes["holder"].pid)
        if self.namespace is None or self.namespace == mount_namespace(1):
            raise ClusterError(f"node {self.name}'s holder has no mount namespace of its own")

    def _containerd_config(self) -> Path:
        config = self.dir / "containerd.toml"
        config.write_text(containerd_config(self.dir / "containerd", self.run_dir / "state",
                                            self.socket, self.dir / "cni",
                                            self.cluster.registry_hosts))
        return config

    def _spawn(self, name: str, args: list[str]) -> None:
        if name != "holder":  # in the holder's mount namespace
            args = ["nsenter", f"--target={self.processes['holder'].pid}", "--mount", "--",
                    *args]
        self.processes[name] = spawn(args, self.log(name))

    def _wait(self, what: str, timeout: float, check: Callable[[], bool], component: str) -> None:
        wait_alive(what, timeout, check, self.processes, self.log, component, f"node {self.name}'s ")

    # -- state in the API -----------------------------------------------------------------
    def ready_status(self) -> str:
        """The node's Ready condition: "True", "False", "Unknown" (lost), "" (no node)."""
        out = self.cluster.kubectl("get", "node", self.name, "-o", "json", check=False)
        if out.returncode != 0:
            return ""
        conditions = json.loads(out.stdout)["status"].get("conditions", [])
        return next((c["status"] for c in conditions if c["type"] == "Ready"), "")

    # -- power loss and removal -----------------------------------------------------------
    def stop(self) -> None:
        """The node loses power: SIGKILL for its kubelet, containerd, shims and every
        container process, nothing graceful (the API keeps its pods Running until the node
        controller notices). Its disk stays; its /run goes."""
        for name in ("kubelet", "containerd", "holder"):
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                kill(process.pid)
        namespaces = {self.namespace} | {
            mount_namespace(pid) for pid in self._marked()}  # a killed session's too
        for namespace in namespaces - {None, mount_namespace(1)}:
            kill_mount_namespace(namespace)
        kill_marked([str(self.dir), str(self.socket)])
        remove_cgroups(CGROUP)  # the containers: all of them in /cellship-node-2
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.processes = {}
        self.namespace = None
        unmount_under(self.run_dir)  # nothing is mounted there on the host: to be sure
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _marked(self) -> list[int]:
        needles = (str(self.dir).encode(), str(self.socket).encode())
        return [pid for pid in pids() if any(n in cmdline(pid) for n in needles)]

    def remove(self) -> None:
        """Stop the node, delete it (and its pods) from the cluster, remove everything it
        made on the machine: bridge, cgroups, directories. Never raises."""
        try:
            self.stop()
            if "kube-apiserver" in self.cluster.processes:
                kubectl = self.cluster.kubectl
                if kubectl("get", "node", self.name, check=False).returncode == 0:
                    kubectl("delete", "pods", "--all-namespaces", "--field-selector",
                            f"spec.nodeName={self.name}", "--force", "--grace-period=0",
                            "--wait=false", check=False)
                    kubectl("delete", "node", self.name, "--wait=true", "--timeout=30s",
                            check=False)
                kubectl("delete", "lease", "-n", "kube-node-lease", self.name,
                        "--ignore-not-found", check=False)
        except Exception:
            pass
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        remove_cgroups(CGROUP)
        unmount_under(self.dir, self.run_dir)
        for path in (self.dir, self.run_dir):
            shutil.rmtree(path, ignore_errors=True)
        for directory in reversed(self.made_dirs):  # only if empty: node 1 may use it since
            try:
                directory.rmdir()
            except OSError:
                pass
        self.made_dirs = []
        if self in self.cluster.extra_nodes:
            self.cluster.extra_nodes.remove(self)
