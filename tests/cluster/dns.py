"""Cluster DNS for the test cluster: dnsmasq answering from a hosts directory that a
thread keeps in step with the API.

Debian packages no CoreDNS, and cellship's pods need exactly what the cluster DNS add-on
gives a TFJob: ``<hostname>.<subdomain>.<ns>.svc.cluster.local`` for pods behind a headless
Service, and ``<svc>.<ns>.svc.cluster.local`` for Services. dnsmasq (Debian's
dnsmasq-base) re-reads ``--hostsdir`` files on change by itself, so the feeder only writes
one hosts file atomically. It listens on the CNI bridge's gateway address, answers
nothing outside ``cluster.local`` (no upstream: no traffic leaves the machine), and uses
TTL 0 so a pod that asked before its peer existed asks again.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from cellship.processes import die_with_parent

DOMAIN = "cluster.local"


def hosts_lines(pods: list[Any], services: list[Any]) -> list[str]:
    """The hosts-file lines for the pods and services the API reports (kubernetes client
    objects), in a stable order so an unchanged cluster rewrites nothing."""
    lines: set[str] = set()
    for pod in pods:
        ip, spec, meta = pod.status.pod_ip, pod.spec, pod.metadata
        if not ip or (pod.status.phase in ("Succeeded", "Failed")):
            continue
        if spec.hostname and spec.subdomain:
            lines.add(f"{ip} {spec.hostname}.{spec.subdomain}.{meta.namespace}.svc.{DOMAIN}")
    for svc in services:
        meta, spec = svc.metadata, svc.spec
        name = f"{meta.name}.{meta.namespace}.svc.{DOMAIN}"
        if spec.cluster_ip and spec.cluster_ip != "None":
            lines.add(f"{spec.cluster_ip} {name}")
            continue
        selector = spec.selector or {}
        for pod in pods:
            labels = pod.metadata.labels or {}
            if (pod.metadata.namespace == meta.namespace and pod.status.pod_ip and selector
                    and all(labels.get(k) == v for k, v in selector.items())):
                lines.add(f"{pod.status.pod_ip} {name}")
    return sorted(lines)


class ClusterDNS:
    """dnsmasq on ``listen`` plus the feeder thread; ``stop()`` ends both."""

    def __init__(self, directory: Path, listen: str, core_api: Callable[[], Any],
                 log: Path, interval: float = 0.3) -> None:
        self.directory = directory / "hosts.d"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.listen = listen
        self._core_api = core_api
        self._interval = interval
        self._stop = threading.Event()
        self._written: list[str] | None = None
        self.errors = 0
        self._write([])
        self.process = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", f"--hostsdir={self.directory}", f"--listen-address={listen}",
             "--bind-interfaces", "--port=53", "--user=root", "--pid-file=",
             f"--local=/{DOMAIN}/", "--local-ttl=0", "--neg-ttl=0", "--log-facility=-"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent)
        self._thread = threading.Thread(target=self._feed, name="cluster-dns", daemon=True)
        self._thread.start()

    def _write(self, lines: list[str]) -> None:
        if lines == self._written:
            return
        tmp = self.directory.parent / "hosts.tmp"
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, self.directory / "cluster")
        self._written = lines

    def _feed(self) -> None:
        api = None
        while not self._stop.wait(self._interval):
            try:
                api = api or self._core_api()
                pods = api.list_pod_for_all_namespaces(_request_timeout=5).items
                services = api.list_service_for_all_namespaces(_request_timeout=5).items
                self._write(hosts_lines(pods, services))
            except Exception:  # the apiserver may restart mid-test: keep the last answers
                self.errors += 1
                api = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
