"""What makes the test cluster's Services and image pulls work like a real cluster's:
kube-proxy (iptables mode) and containerd's registry mirrors.

kube-proxy: ClusterIP Services route from this machine and from pods, as on any cluster
(without it a Service is only a DNS name and an Endpoints list). ``--masquerade-all``
because every pod sits on one bridge: without it a pod calling a Service answered by a pod
on the same bridge gets the reply straight from the peer's address and drops it.
``--conntrack-max-per-core=0`` leaves the machine's conntrack table size alone (kube-proxy
would otherwise write a sysctl of the host).

Registry mirrors: containerd's CRI reads ``hosts.toml`` files under ``config_path`` at every
pull (no restart), one directory per registry host; a plain-http test registry is declared
there, so a pod's ``image: 127.0.0.1:PORT/name:tag`` is a real pull through the registry
API, as a cluster pulls from its registry.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def kube_proxy_args(binary: Path, kubeconfig: Path, cluster_cidr: str, node: str,
                    healthz_port: int, metrics_port: int) -> list[str]:
    """The kube-proxy command line for the test cluster (reasons in the module docstring)."""
    return [str(binary), "--kubeconfig", str(kubeconfig), "--proxy-mode=iptables",
            f"--hostname-override={node}", f"--cluster-cidr={cluster_cidr}",
            "--masquerade-all", "--conntrack-max-per-core=0",
            "--bind-address=127.0.0.1", f"--healthz-bind-address=127.0.0.1:{healthz_port}",
            f"--metrics-bind-address=127.0.0.1:{metrics_port}", "--iptables-sync-period=5s",
            "--v=1"]


def remove_kube_proxy_rules(binary: Path) -> None:
    """kube-proxy's own cleanup of the chains and rules it wrote (never raises)."""
    if binary.exists():
        subprocess.run([str(binary), "--cleanup", "--proxy-mode=iptables"],
                       capture_output=True, timeout=60)


def containerd_registry_section(hosts_dir: Path) -> str:
    """The containerd config lines that make CRI read per-registry ``hosts.toml`` files."""
    return f'[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{hosts_dir}"\n'


def mirror_plain_http(hosts_dir: Path, address: str) -> Path:
    """Declare the registry at ``address`` (host:port) as plain http for pulls."""
    directory = hosts_dir / address
    directory.mkdir(parents=True, exist_ok=True)
    hosts = directory / "hosts.toml"
    hosts.write_text(f'server = "http://{address}"\n\n'
                     f'[host."http://{address}"]\n  capabilities = ["pull", "resolve"]\n')
    return hosts
