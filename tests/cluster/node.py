"""What every node of the test cluster runs, whichever node it is: its containerd's
config, its CNI network, its kubelet's flags (harness.py boots node 1 with them,
second_node.py node 2).

Addresses: the pods of node N get 10.77.(N-1).0/24 on the bridge ``cellshipk8s(N-1)``, the
node itself the subnet's .1 (node 1's, 10.77.0.1, is also the apiserver's and the cluster
DNS's address). The host routes between the bridges; kube-proxy's iptables rules on the
host serve Services for pods of every node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from cellship.processes import die_with_parent
from tests.cluster.network_services import containerd_registry_section

GATEWAY = "10.77.0.1"
CLUSTER_CIDR = "10.77.0.0/16"  # every node's pod subnet
SERVICE_RANGE = "10.0.0.0/24"
PAUSE_REF = "cellship.test/pause:3.4"
SYSTEM_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    """A component in its own session (stopped by process group), logging to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ, PATH=SYSTEM_PATH),
            preexec_fn=die_with_parent)  # a killed session takes its cluster with it


def cni_conflist(bridge: str, subnet: str, gateway: str, ipam_dir: Path) -> str:
    """A node's CNI config: its bridge and subnet, routes to the Services and to the other
    nodes' pods (and the DNS and apiserver on 10.77.0.1) via the node; no default route:
    pods reach nothing beyond the machine."""
    routes = [{"dst": SERVICE_RANGE, "gw": gateway}, {"dst": CLUSTER_CIDR, "gw": gateway}]
    return json.dumps({
        "cniVersion": "0.4.0", "name": "cellship-test",
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
                     "hairpinMode": True,
                     "ipam": {"type": "host-local", "routes": routes, "dataDir": str(ipam_dir),
                              "ranges": [[{"subnet": subnet, "gateway": gateway}]]}}]})


def containerd_config(root: Path, state: Path, socket_path: Path, cni_dir: Path,
                      registry_hosts: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket_path}"
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
  conf_dir = "{cni_dir}"
{containerd_registry_section(registry_hosts)}"""


def kubelet_args(binaries: Path, kubeconfig: Path, root: Path, socket_path: Path,
                 node: str) -> list[str]:
    """A kubelet named ``node`` (an address on loopback: the apiserver reaches kubelets by
    Hostname), its files in ``root``. Its node lease lasts 8 s, renewed every 2 s (1.20 has
    no flag for it: a config file; then the flags keep the legacy defaults a config file
    drops: anonymous auth, no webhook, AlwaysAllow): with the controller-manager's 10 s
    grace a lost node is Unknown within seconds."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.json"
    config.write_text(json.dumps({"kind": "KubeletConfiguration", "nodeLeaseDurationSeconds": 8,
                                  "apiVersion": "kubelet.config.k8s.io/v1beta1"}))
    return [
        str(binaries / "kubelet"), "--config", str(config), "--anonymous-auth=true",
        "--authentication-token-webhook=false", "--authorization-mode=AlwaysAllow",
        "--kubeconfig", str(kubeconfig), "--root-dir", str(root),
        "--container-runtime=remote", f"--container-runtime-endpoint=unix://{socket_path}",
        f"--pod-infra-container-image={PAUSE_REF}",
        "--cgroup-driver=cgroupfs", f"--hostname-override={node}",
        f"--address={node}", "--port", str(free_port(node)),
        f"--healthz-bind-address={node}", f"--healthz-port={free_port(node)}",
        "--read-only-port=0", "--fail-swap-on=false", "--oom-score-adj=0",
        "--make-iptables-util-chains=false", "--node-status-update-frequency=2s",
        f"--cluster-dns={GATEWAY}", "--cluster-domain=cluster.local",
        "--eviction-hard=memory.available<50Mi,nodefs.available<1%,imagefs.available<1%",
        "--image-gc-high-threshold=100", "--image-gc-low-threshold=99",
        "--serialize-image-pulls=false", "--sync-frequency=5s",
        # A pod over its job dir's --disk-limit is evicted on the eviction manager's next
        # pass after its volume was measured: every 2 s, not every minute.
        "--volume-stats-agg-period=2s",
        "--register-node=true", "--v=1"]
