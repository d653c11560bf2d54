"""A real Kubernetes for the cluster tier (second_node.py adds a second node), from Debian.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables mode) and
a kubelet over containerd and runc, a CNI bridge on a private subnet, dnsmasq as cluster DNS
and containerd registry mirrors for test registries: the programs a production cluster runs,
on loopback and a bridge this run creates. The recipe and every flag's reason are in
../shared/notes/local-kubernetes.md; what every node runs is in node.py. The control plane
and kubelet come from ``build-kubernetes.sh`` (Debian's kubernetes source, built once).

Everything the cluster writes lives under one work directory (plus the fixed paths the
kubelet insists on, cleaned in ``stop``); ``stop`` runs even after a failed boot and
leaves no process, mount, network namespace, cgroup or bridge behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.cluster.dns import ClusterDNS
from tests.cluster.network_services import kube_proxy_args, mirror_plain_http, remove_kube_proxy_rules
from tests.cluster.node import (
    CLUSTER_CIDR,
    GATEWAY,
    PAUSE_REF,
    SERVICE_RANGE,
    SYSTEM_PATH,
    cni_conflist,
    containerd_config,
    free_port,
    kubelet_args,
    spawn,
)
from tests.cluster.pki import make_pki
from tests.cluster.processes import ClusterError, machine_lock, terminate, wait_alive
from tests.cluster.second_node import ExtraNode
from tests.cluster.teardown import kill_containers, kill_marked, remove_cgroups, remove_netns, unmount_under

HERE = Path(__file__).resolve().parent
BRIDGE = "cellshipk8s0"
SUBNET = "10.77.0.0/24"
ADMIN_TOKEN_USER = "admin"
LIMITED_USER = "jane"
CONTEXT = "cellship-test"
NODE = "127.0.0.1"  # the kubelet's --hostname-override
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present"  # what the NVIDIA GPU operator labels GPU nodes with
KUBELET_FIXED_DIRS = (Path("/var/lib/kubelet"), Path("/var/log/pods"), Path("/var/log/containers"))


def build_binaries() -> Path:
    """The cached directory of the Kubernetes binaries (built on first use, 13-17 min)."""
    out = subprocess.run(["bash", str(HERE / "build-kubernetes.sh")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    return Path(out[-1])


def missing_prerequisites() -> str | None:
    """Why the cluster cannot boot here (None when it can)."""
    if os.geteuid() != 0:
        return "the cluster tier runs as root (kubelet, containerd, network namespaces)"
    for tool in ("etcd", "containerd", "ctr", "runc", "dnsmasq", "umoci", "openssl", "ip"):
        if shutil.which(tool, path=SYSTEM_PATH) is None:
            return f"{tool} is missing: run tests/cluster/build-kubernetes.sh (apt-get installs it)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "CNI plugins missing (Debian containernetworking-plugins)"
    return None


@dataclass
class LocalCluster:
    """One booted cluster. ``start()``/``stop()``, or use it as a context manager."""

    binaries: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cellship-k8s-")))
    limited_token: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    dns: ClusterDNS | None = None
    api_port: int = 0
    token: str = ""
    extra_nodes: list[ExtraNode] = field(default_factory=list)

    # -- paths -------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def context(self) -> str:
        return CONTEXT

    @property
    def api_host(self) -> str:
        """The apiserver's address (the bridge's gateway: reachable from pods and here)."""
        return GATEWAY

    @property
    def run_dir(self) -> Path:
        """containerd's state and socket: a short path (unix sockets allow 108 bytes)."""
        return Path("/run") / f"cellship-k8s-{self.workdir.name[-8:]}"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # -- boot ----------------------------------------------------------------------------
    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        self._lock = machine_lock()
        try:
            self._reap_stale()
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        make_pki(pki, host_ip=GATEWAY)
        self.token = os.urandom(16).hex()
        self._write_tokens(pki)
        self.api_port = free_port()
        self._write_kubeconfigs(pki)
        self._network()  # the apiserver listens on the bridge's gateway address
        etcd_client, etcd_peer = free_port(), free_port()
        self._spawn("etcd", ["etcd", "--data-dir", str(self.workdir / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                             "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                             "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
                             ])
        self._spawn("kube-apiserver", self._apiserver_args(pki, etcd_client))
        self._wait("the apiserver to answer /readyz", timeout, self._api_ready, "kube-apiserver")
        self._spawn("kube-controller-manager", [
            str(self.binaries / "kube-controller-manager"),
            "--kubeconfig", str(self.workdir / "admin.kubeconfig"),
            "--leader-elect=false", "--bind-address=127.0.0.1", "--port=0",
            "--secure-port=0",
            "--service-account-private-key-file", str(pki / "sa.key"),
            "--root-ca-file", str(pki / "ca.crt"), "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service",
            "--node-monitor-grace-period=10s", "--node-monitor-period=2s",
            "--pod-eviction-timeout=30s"])
        self._spawn("kube-scheduler", [
            str(self.binaries / "kube-scheduler"),
            "--kubeconfig", str(self.workdir / "admin.kubeconfig"),
            "--leader-elect=false", "--bind-address=127.0.0.1", "--port=0", "--secure-port=0"])
        self._start_containerd(timeout)
        self._import_pause()
        self._start_kubelet()
        self._spawn("kube-proxy", kube_proxy_args(
            self.binaries / "kube-proxy", self.workdir / "admin.kubeconfig", CLUSTER_CIDR, NODE,
            free_port(), free_port()))
        self.dns = ClusterDNS(self.workdir / "dns", GATEWAY, self.core_api, self.log("dnsmasq"))
        self._wait("the node to be Ready", timeout, lambda: self.node_ready(NODE), "kubelet")
        self._wait("the default ServiceAccount", timeout,
                   lambda: self.kubectl("get", "serviceaccount", "default",
                                        check=False).returncode == 0,
                   "kube-controller-manager")

    def _reap_stale(self) -> None:
        """Remove what a killed session left (its processes, containers, mounts): holding
        the machine lock, every other cluster directory is stale."""
        stale_dirs = [d for d in Path(tempfile.gettempdir()).glob("cellship-k8s-*")
                      if d != self.workdir]
        for workdir in stale_dirs:
            stale = LocalCluster(self.binaries, workdir=workdir)
            kill_marked((str(workdir), str(stale.run_dir)))  # a second node's too
            stale.stop(lock_held=True)
        ExtraNode(self).remove()  # a second node whose work directory is gone already

    def _write_tokens(self, pki: Path) -> None:
        """The admin (system:masters: every right under RBAC) and ``LIMITED_USER``, who has
        no RoleBinding: what a data scientist with a fresh account meets."""
        self.limited_token = os.urandom(16).hex()
        lines = [f"{self.token},{ADMIN_TOKEN_USER},uid-admin,system:masters",
                 f"{self.limited_token},{LIMITED_USER},uid-{LIMITED_USER}"]
        (pki / "tokens.csv").write_text("\n".join(lines) + "\n")

    def limited_kubeconfig(self) -> Path:
        """A kubeconfig for ``LIMITED_USER`` (RBAC tests grant it Roles as they need)."""
        return self.kubeconfig_for(self.limited_token, LIMITED_USER)

    def _kubeconfig_text(self, pki: Path, token: str, user: str) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
            "clusters": [{"name": CONTEXT, "cluster": {
                "server": f"https://{GATEWAY}:{self.api_port}",
                "certificate-authority": str(pki / "ca.crt")}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user,
                                                       "namespace": "default"}}]})

    def _write_kubeconfigs(self, pki: Path) -> None:
        text = self._kubeconfig_text(pki, self.token, ADMIN_TOKEN_USER)
        for name in ("kubeconfig", "admin.kubeconfig"):
            (self.workdir / name).write_text(text)
            (self.workdir / name).chmod(0o600)

    def kubeconfig_for(self, token: str, user: str) -> Path:
        path = self.workdir / f"{user}.kubeconfig"
        path.write_text(self._kubeconfig_text(self.workdir / "pki", token, user))
        return path

    def service_account_token(self, namespace: str, name: str, minutes: int = 15,
                              bound_secret: str | None = None) -> str:
        """A real ServiceAccount token (the TokenRequest API, as the kubelet gets the
        projected one of a pod); ``bound_secret``: bound to that Secret, so deleting it
        revokes the token (how a test sees a stale token being refused)."""
        bound = ["--bound-object-kind", "Secret", "--bound-object-name", bound_secret] \
            if bound_secret else []
        return self.kubectl("create", "token", name, "-n", namespace,
                            f"--duration={minutes}m", *bound).stdout.strip()

    def service_account_files(self, directory: Path, namespace: str, token: str) -> Path:
        """``directory`` laid out like /var/run/secrets/kubernetes.io/serviceaccount."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(token)
        (directory / "ca.crt").write_bytes((self.workdir / "pki" / "ca.crt").read_bytes())
        (directory / "namespace").write_text(namespace)
        return directory

    def _apiserver_args(self, pki: Path, etcd_client: int) -> list[str]:
        return [str(self.binaries / "kube-apiserver"),
                "--etcd-servers", f"http://127.0.0.1:{etcd_client}",
                # On the bridge's gateway, as a real control plane is on the node network:
                # pods reach it through the `kubernetes` Service (its endpoint is this
                # address), this machine at the same address. Nothing outside the machine
                # can (the bridge is this run's own).
                f"--bind-address={GATEWAY}", f"--advertise-address={GATEWAY}",
                "--secure-port", str(self.api_port),
                "--tls-cert-file", str(pki / "apiserver.crt"),
                "--tls-private-key-file", str(pki / "apiserver.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--token-auth-file", str(pki / "tokens.csv"),
                "--authorization-mode=RBAC",  # as real clusters: 403s are testable
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-cluster-ip-range", SERVICE_RANGE,
                "--kubelet-preferred-address-types=Hostname,InternalIP",
                "--allow-privileged=false", "--profiling=false"]

    def restart_apiserver(self, downtime: float = 2.0, timeout: float = 60.0) -> None:
        """Stop the apiserver, wait ``downtime`` s, start it again (reconnect tests). SIGTERM
        closes its listener, then it waits on open watches: 1 s, so nodes lose it ~4 s more."""
        process = self.processes.pop("kube-apiserver")
        args = process.args
        terminate(process, grace=1.0)
        time.sleep(downtime)
        self._spawn("kube-apiserver", list(args))
        self._wait("the apiserver to answer /readyz again", timeout, self._api_ready,
                   "kube-apiserver")

    def _network(self) -> None:
        """The bridge exists before any pod so dnsmasq can listen on its gateway address."""
        ip = ["ip"]
        if subprocess.run(ip + ["link", "show", BRIDGE], capture_output=True).returncode != 0:
            subprocess.run(ip + ["link", "add", BRIDGE, "type", "bridge"], check=True)
            subprocess.run(ip + ["addr", "add", f"{GATEWAY}/24", "dev", BRIDGE], check=True)
        subprocess.run(ip + ["link", "set", BRIDGE, "up"], check=True)
        # Pods route the whole 10.77.0.0/16 via their node: what no node's bridge holds
        # is refused here instead of leaving by the machine's default route.
        subprocess.run(ip + ["route", "replace", "unreachable", CLUSTER_CIDR], check=True)
        cni = self.workdir / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-cellship.conflist").write_text(
            cni_conflist(BRIDGE, SUBNET, GATEWAY, self.workdir / "cni-ipam"))

    def _start_containerd(self, timeout: float) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "containerd.toml"
        config.write_text(containerd_config(self.workdir / "containerd", self.run_dir / "state",
                                            self.containerd_socket, self.workdir / "cni",
                                            self.registry_hosts))
        self._spawn("containerd", ["containerd", "--config", str(config)])
        self._wait("containerd's socket", timeout,
                   lambda: self.ctr("version", check=False).returncode == 0, "containerd")

    @property
    def registry_hosts(self) -> Path:
        """containerd's per-registry ``hosts.toml`` directory (see :meth:`pull_from`)."""
        return self.workdir / "registry-hosts"

    def pull_from(self, address: str) -> None:
        """Let pods pull images from the plain-http registry at ``address`` (host:port)."""
        mirror_plain_http(self.registry_hosts, address)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", str(self.containerd_socket),
                               "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, check=check)

    def import_image(self, archive: Path, ref: str | None = None) -> None:
        """Import an image archive into the node (pods use ``imagePullPolicy: Never``)."""
        args = ["images", "import"]
        if ref:
            args += ["--base-name", ref.rsplit(":", 1)[0]]
        result = self.ctr(*args, str(archive), check=False)
        if result.returncode != 0:
            raise ClusterError(f"ctr images import {archive} failed: {result.stderr.strip()}")

    def _import_pause(self) -> None:
        """The sandbox image, made here: the static pause binary in a one-layer OCI image."""
        layout = self.workdir / "pause-oci"
        bundle = self.workdir / "pause-bundle"
        umoci = ["umoci"]
        subprocess.run(umoci + ["init", "--layout", str(layout)], check=True, capture_output=True)
        subprocess.run(umoci + ["new", "--image", f"{layout}:3.4"], check=True, capture_output=True)
        subprocess.run(umoci + ["unpack", "--image", f"{layout}:3.4", str(bundle)], check=True,
                       capture_output=True)
        shutil.copy(self.binaries / "pause", bundle / "rootfs" / "pause")
        subprocess.run(umoci + ["repack", "--image", f"{layout}:3.4", str(bundle)], check=True,
                       capture_output=True)
        subprocess.run(umoci + ["config", "--image", f"{layout}:3.4",
                                "--config.entrypoint=/pause"], check=True, capture_output=True)
        archive = self.workdir / "pause.tar"
        subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
        self.import_image(archive, PAUSE_REF)
        names = self.ctr("images", "ls", "-q").stdout.split()
        if PAUSE_REF not in names:
            raise ClusterError(f"the pause image was imported as {names}, not {PAUSE_REF}")

    def _start_kubelet(self) -> None:
        root = self.workdir / "kubelet"
        root.mkdir(exist_ok=True)
        self._spawn("kubelet", kubelet_args(self.binaries, self.workdir / "admin.kubeconfig",
                                            root, self.containerd_socket, NODE))

    # -- readiness checks ---------------------------------------------------------------------
    def core_api(self) -> Any:
        from kubernetes import client, config

        api_client = config.new_client_from_config(str(self.kubeconfig))
        return client.CoreV1Api(api_client)

    def kubectl(self, *args: str, check: bool = True, kubeconfig: Path | None = None,
                input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig or self.kubeconfig),
                               *args], capture_output=True, text=True, check=check, input=input)

    # -- a node with GPUs to schedule ---------------------------------------------------------
    def advertise_gpus(self, count: int = 2) -> None:
        """Make the node look like a GPU pool's: ``nvidia.com/gpu: count`` patched onto its
        status capacity (an extended resource, as the Kubernetes docs' "Advertise Extended
        Resources for a Node" does; the kubelet derives allocatable from it), the label
        and the taint GPU pools carry. Waits until the scheduler's input (allocatable)
        shows it. A kubelet restart resets the capacity: call this again after one."""
        patch = json.dumps([{"op": "add", "path": "/status/capacity/nvidia.com~1gpu",
                             "value": str(count)}])
        self.kubectl("patch", "node", NODE, "--subresource=status", "--type=json", "-p", patch)
        self.kubectl("label", "node", NODE, f"{GPU_LABEL}=true", "--overwrite")
        self.kubectl("taint", "node", NODE, f"{GPU_RESOURCE}:NoSchedule", "--overwrite")
        self._wait("the node to advertise its GPUs", 30, lambda: self.node_gpus() == count,
                   "kubelet")

    def node_gpus(self) -> int:
        """The node's allocatable nvidia.com/gpu (0 when it has none)."""
        out = self.kubectl("get", "node", NODE, "-o", "json").stdout
        value = json.loads(out)["status"].get("allocatable", {}).get(GPU_RESOURCE, "0")
        return int(value)

    def withdraw_gpus(self) -> None:
        """Undo :meth:`advertise_gpus`: no GPU resource, label or taint (other tests' pods
        tolerate no GPU taint)."""
        self.kubectl("taint", "node", NODE, f"{GPU_RESOURCE}:NoSchedule-", check=False)
        self.kubectl("label", "node", NODE, f"{GPU_LABEL}-", check=False)
        patch = json.dumps({"status": {"capacity": {GPU_RESOURCE: None},
                                       "allocatable": {GPU_RESOURCE: None}}})
        self.kubectl("patch", "node", NODE, "--subresource=status", "--type=merge", "-p", patch,
                     check=False)
        self._wait("the node to drop its GPUs", 30, lambda: self.node_gpus() == 0, "kubelet")

    def _api_ready(self) -> bool:
        return self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

    def node_ready(self, node: str = NODE) -> bool:
        out = self.kubectl("get", "node", node, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                           check=False)
        return out.returncode == 0 and out.stdout.strip() == "True"

    def _wait(self, what: str, timeout: float, check: Callable[[], bool], component: str) -> None:
        wait_alive(what, timeout, check, self.processes, self.log, component, "")

    def _spawn(self, name: str, args: list[str]) -> None:
        self.processes[name] = spawn(args, self.log(name))

    # -- more nodes ---------------------------------------------------------------------------
    def add_node(self, images: tuple[tuple[Path, str], ...] = ()) -> ExtraNode:
        """Boot a second node (second_node.py: named 127.0.0.2) with ``images`` ((archive,
        ref) pairs) imported; ``node.remove()`` or :meth:`stop` removes it."""
        node = ExtraNode(self)
        self.extra_nodes.append(node)
        try:
            node.start(images=images)
        except BaseException:
            node.remove()
            raise
        return node

    # -- teardown ---------------------------------------------------------------------------
    def stop(self, lock_held: bool = False) -> None:
        """Everything down, in the order that leaves nothing behind; never raises. Only by
        the machine lock's holder (``lock_held``: reaping a stale cluster): bridge, cgroups
        and fixed paths are the machine's, maybe another session's that holds the lock."""
        if getattr(self, "_lock", None) is None and not lock_held:
            return  # never started: e.g. the atexit hook of a session that never got the lock
        for node in list(self.extra_nodes) or [ExtraNode(self)]:  # or a killed session's
            node.remove()
        self.extra_nodes = []
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        for step in (self._delete_pods, self._kill_containers):
            try:
                step()
            except Exception:
                pass
        for name in ("kube-proxy", "kubelet", "containerd", "kube-scheduler",
                     "kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.pop(name, None)
            if process is not None:
                terminate(process)
        remove_kube_proxy_rules(self.binaries / "kube-proxy")
        kill_marked([str(self.containerd_socket)], also=b"containerd-shim")
        for name, process in list(self.processes.items()):
            terminate(process)
            self.processes.pop(name)
        unmount_under(self.workdir, self.run_dir, *KUBELET_FIXED_DIRS)
        remove_netns("10.77.0.")
        remove_cgroups("kubepods")
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        subprocess.run(["ip", "route", "delete", "unreachable", CLUSTER_CIDR], capture_output=True)
        for path in (self.run_dir, self.workdir, *KUBELET_FIXED_DIRS):
            shutil.rmtree(path, ignore_errors=True)
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.close()  # releases the flock: the next cluster may boot

    def _kill_containers(self) -> None:
        if "containerd" in self.processes:
            kill_containers(self.ctr)

    def _delete_pods(self) -> None:
        if "kube-apiserver" not in self.processes or "kubelet" not in self.processes:
            return
        self.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=0",
                     "--force", "--wait=true", "--timeout=30s", check=False)


def main() -> None:
    """``python -m tests.cluster.harness``: boot a cluster, print how to use it, keep it up
    until Ctrl-C (for trying cellship by hand against a real cluster)."""
    from tests.cluster.image import training_image_archive

    archive, image = training_image_archive()
    cluster = LocalCluster(build_binaries())
    try:
        cluster.start()
        cluster.import_image(archive, image)
        print(f"cluster up: export KUBECONFIG={cluster.kubeconfig}; image {image}", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
