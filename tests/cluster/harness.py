"""A real single-node Kubernetes for the cluster tier, booted from Debian's packages.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables mode) and
a kubelet over containerd and runc, a CNI bridge on a private subnet, dnsmasq as cluster DNS
and containerd registry mirrors for test registries: the programs a production cluster runs,
on loopback and a bridge this run creates. The recipe and every flag's reason are in
../shared/notes/local-kubernetes.md. The control plane and kubelet
come from ``build-kubernetes.sh`` (Debian's kubernetes source, built once and cached).

Everything the cluster writes lives under one work directory (plus the fixed paths the
kubelet insists on, cleaned in ``stop``); ``stop`` runs even after a failed boot and
leaves no process, mount, network namespace, cgroup or bridge behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cellship.processes import die_with_parent
from tests.cluster.dns import ClusterDNS
from tests.cluster.network_services import (
    containerd_registry_section,
    kube_proxy_args,
    mirror_plain_http,
    remove_kube_proxy_rules,
)
from tests.cluster.pki import make_pki
from tests.cluster.processes import ClusterError, kill, machine_lock, pids, tail, terminate

HERE = Path(__file__).resolve().parent
BRIDGE = "cellshipk8s0"
SUBNET = "10.77.0.0/24"
GATEWAY = "10.77.0.1"
SERVICE_RANGE = "10.0.0.0/24"
PAUSE_REF = "cellship.test/pause:3.4"
ADMIN_TOKEN_USER = "admin"
LIMITED_USER = "jane"
CONTEXT = "cellship-test"
NODE = "127.0.0.1"  # the kubelet's --hostname-override
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present"  # what the NVIDIA GPU operator labels GPU nodes with
KUBELET_FIXED_DIRS = (Path("/var/lib/kubelet"), Path("/var/log/pods"), Path("/var/log/containers"))
SYSTEM_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            "--node-monitor-grace-period=20s", "--pod-eviction-timeout=30s"])
        self._spawn("kube-scheduler", [
            str(self.binaries / "kube-scheduler"),
            "--kubeconfig", str(self.workdir / "admin.kubeconfig"),
            "--leader-elect=false", "--bind-address=127.0.0.1", "--port=0", "--secure-port=0"])
        self._start_containerd(timeout)
        self._import_pause()
        self._start_kubelet()
        self._spawn("kube-proxy", kube_proxy_args(
            self.binaries / "kube-proxy", self.workdir / "admin.kubeconfig", SUBNET, NODE,
            free_port(), free_port()))
        self.dns = ClusterDNS(self.workdir / "dns", GATEWAY, self.core_api, self.log("dnsmasq"))
        self._wait("the node to be Ready", timeout, self._node_ready, "kubelet")
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
            markers = (str(workdir).encode(), str(stale.run_dir).encode())
            for pid in pids():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if any(m in cmdline for m in markers):
                    kill(pid)
            stale.stop()

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
        """Stop the apiserver, wait ``downtime`` seconds, start it again (reconnect tests)."""
        process = self.processes.pop("kube-apiserver")
        args = process.args
        terminate(process)
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
        cni = self.workdir / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-cellship.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "cellship-test",
            "plugins": [{"type": "bridge", "bridge": BRIDGE, "isGateway": True,
                         "ipMasq": False, "hairpinMode": True,
                         "ipam": {"type": "host-local",
                                  "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                                  # Services' ClusterIPs via the host (kube-proxy's rules);
                                  # no default route: pods reach nothing beyond the machine
                                  "routes": [{"dst": SERVICE_RANGE, "gw": GATEWAY}],
                                  "dataDir": str(self.workdir / "cni-ipam")}}]}))

    def _start_containerd(self, timeout: float) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "containerd.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config.write_text(f"""version = 2
root = "{self.workdir / 'containerd'}"
state = "{self.run_dir / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.containerd_socket}"
[{cri}]
  sandbox_image = "{PAUSE_REF}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{self.workdir / 'cni'}"
{containerd_registry_section(self.registry_hosts)}""")
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
        self.kubelet_port = free_port()
        self._spawn("kubelet", [
            str(self.binaries / "kubelet"),
            "--kubeconfig", str(self.workdir / "admin.kubeconfig"),
            "--root-dir", str(root),
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{self.containerd_socket}",
            f"--pod-infra-container-image={PAUSE_REF}",
            "--cgroup-driver=cgroupfs", "--hostname-override=127.0.0.1",
            "--address=127.0.0.1", "--port", str(self.kubelet_port),
            "--healthz-bind-address=127.0.0.1", f"--healthz-port={free_port()}",
            "--read-only-port=0", "--fail-swap-on=false", "--oom-score-adj=0",
            "--make-iptables-util-chains=false", "--node-status-update-frequency=2s",
            f"--cluster-dns={GATEWAY}", "--cluster-domain=cluster.local",
            "--eviction-hard=memory.available<50Mi,nodefs.available<1%,imagefs.available<1%",
            "--image-gc-high-threshold=100", "--image-gc-low-threshold=99",
            "--serialize-image-pulls=false", "--sync-frequency=5s",
            "--register-node=true", "--v=1"])

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

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", "127.0.0.1", "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                           check=False)
        return out.returncode == 0 and out.stdout.strip() == "True"

    def _wait(self, what: str, timeout: float, check: Callable[[], bool], component: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ClusterError(f"{name} exited ({process.returncode}) while waiting "
                                       f"for {what}:\n{tail(self.log(name))}")
            if check():
                return
            time.sleep(0.3)
        raise ClusterError(f"timed out after {timeout:g}s waiting for {what}; "
                           f"{component} log:\n{tail(self.log(component))}")

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.log(name).open("ab")
        self.processes[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ, PATH=SYSTEM_PATH),
            preexec_fn=die_with_parent)  # a killed session takes its cluster with it
        log.close()

    # -- teardown ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Everything down, in the order that leaves nothing behind; never raises."""
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        steps: list[Callable[[], None]] = [self._delete_pods, self._kill_containers]
        for step in steps:
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
        self._kill_shims()
        for name, process in list(self.processes.items()):
            terminate(process)
            self.processes.pop(name)
        self._unmount_under(self.workdir, self.run_dir, *KUBELET_FIXED_DIRS)
        self._remove_netns()
        self._remove_cgroups()
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        for path in (self.run_dir, self.workdir, *KUBELET_FIXED_DIRS):
            shutil.rmtree(path, ignore_errors=True)
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.close()  # releases the flock: the next cluster may boot

    def _delete_pods(self) -> None:
        if "kube-apiserver" not in self.processes or "kubelet" not in self.processes:
            return
        self.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=0",
                     "--force", "--wait=true", "--timeout=30s", check=False)

    def _kill_containers(self) -> None:
        if "containerd" not in self.processes:
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.ctr("tasks", "ls", "-q", check=False).stdout.strip():
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "rm", "-f", task, check=False)
            time.sleep(0.2)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "rm", container, check=False)

    def _kill_shims(self) -> None:
        """containerd-shim-runc-v2 daemonizes away from containerd: find ours by socket."""
        marker = str(self.containerd_socket).encode()
        for pid in pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline:
                kill(pid)

    def _unmount_under(self, *roots: Path) -> None:
        prefixes = tuple(str(r) + "/" for r in roots) + tuple(str(r) for r in roots)
        for _ in range(3):
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
            ours = sorted((m for m in mounts if m.startswith(prefixes) or m in prefixes),
                          key=len, reverse=True)
            if not ours:
                return
            for mount in ours:
                subprocess.run(["umount", "-l", mount], capture_output=True)

    def _remove_netns(self) -> None:
        """containerd's CRI names pod network namespaces ``cni-<uuid>`` under /run/netns."""
        netns = Path("/run/netns")
        if not netns.is_dir():
            return
        for entry in netns.iterdir():
            if entry.name.startswith("cni-") and self._netns_is_ours(entry):
                subprocess.run(["umount", str(entry)], capture_output=True)
                entry.unlink(missing_ok=True)

    def _netns_is_ours(self, entry: Path) -> bool:
        """Ours when it holds an address on our subnet (or nothing at all: a dead pod's)."""
        out = subprocess.run(["ip", "-n", entry.name, "-o", "addr"], capture_output=True,
                             text=True).stdout
        return "10.77.0." in out or "eth0" not in out

    def _remove_cgroups(self) -> None:
        """The kubelet's cgroupfs driver makes ``kubepods`` in every v1 hierarchy."""
        root = Path("/sys/fs/cgroup")
        for hierarchy in root.iterdir() if root.is_dir() else ():
            base = hierarchy / "kubepods"
            if not base.is_dir():
                continue
            for directory in sorted((p for p in base.rglob("*") if p.is_dir()),
                                    key=lambda p: len(p.parts), reverse=True) + [base]:
                try:
                    for pid in (directory / "cgroup.procs").read_text().split():
                        kill(int(pid))
                    directory.rmdir()
                except OSError:
                    pass


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
