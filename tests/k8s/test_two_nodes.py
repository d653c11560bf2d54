"""The test cluster with a second node (tests/cluster/second_node.py, the ``two_nodes``
fixture): what chaos tests stand on.

A pod pinned to each node (``nodeSelector`` on ``kubernetes.io/hostname``, through the
scheduler) serves its hostname over HTTP and probes the other one as TensorFlow workers
reach each other: by the headless-Service DNS name (``<hostname>.<subdomain>``), by a
ClusterIP Service (the one kube-proxy's iptables rules on the host), and the apiserver
through the ``kubernetes`` Service with its projected ServiceAccount token (a volume the
node's kubelet mounted, read by the container its containerd started). Then node 2 loses
power: the API still shows its pod Running, the node controller marks the node Unknown
within seconds; node 2 boots again, rejoins, and runs its pod again. Finally removal
leaves nothing on the machine.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from cellship.kube.podspec import container_security, pod_security
from tests.cluster.second_node import BRIDGE, CGROUP, HOLDER
from tests.cluster.teardown import hierarchies
from tests.k8s.support import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

PROBE = r'''
import http.server, os, socket, ssl, threading, time, urllib.request

class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = socket.gethostname().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("", 8080), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()

def fetch(url, **kwargs):
    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(url, headers=kwargs.pop("headers", {}))
            with urllib.request.urlopen(request, timeout=3, **kwargs) as response:
                return response.read().decode().replace("\n", " ")
        except Exception as error:
            if time.monotonic() > deadline:
                return f"FAILED {error!r}"
            time.sleep(0.3)

peer, ns = os.environ["PEER"], os.environ["NS"]
print("probe pod", fetch(f"http://{peer}.peers.{ns}.svc.cluster.local:8080/"), flush=True)
print("probe service", fetch(f"http://web-{peer}.{ns}.svc.cluster.local/"), flush=True)
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
version = fetch("https://kubernetes.default.svc/version", context=context,
                headers={"Authorization": f"Bearer {token}"})
print("probe apiserver", "ok" if '"gitVersion"' in version else version, flush=True)
print("probes done", flush=True)
threading.Event().wait()
'''


def manifests(image: str, nodes: dict[str, str]) -> dict[str, Any]:
    """A pod per node (name -> node), each behind a ClusterIP Service ``web-<name>``, all
    behind the headless Service ``peers``."""
    peer = {"one": "two", "two": "one"}
    items: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "peers"},
        "spec": {"clusterIP": "None", "selector": {"app": "two-nodes"},
                 "ports": [{"port": 8080}]}}]
    for name, node in nodes.items():
        items.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "two-nodes", "pod": name}},
            "spec": {
                "hostname": name, "subdomain": "peers",
                "nodeSelector": {"kubernetes.io/hostname": node},
                "securityContext": pod_security(1000),
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "probe", "image": image, "imagePullPolicy": "Never",
                    "command": ["python3", "-u", "-c", PROBE],
                    "env": [{"name": "PEER", "value": peer[name]},
                            {"name": "NS", "valueFrom": {"fieldRef": {
                                "fieldPath": "metadata.namespace"}}}],
                    "ports": [{"containerPort": 8080}],
                    "securityContext": container_security()}]}})
        items.append({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"web-{name}"},
            "spec": {"selector": {"pod": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


@pytest.fixture(scope="module")
def pods(cluster, two_nodes) -> Iterator[str]:
    """The namespace of the two probing pods ("one" on node 1, "two" on node 2)."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", ns,
                                     check=False).returncode == 0, 30, "the ServiceAccount")
    nodes = {"one": two_nodes.first, "two": two_nodes.second}
    cluster.kubectl("apply", "-n", ns, "-f", "-",
                    input=json.dumps(manifests(cluster.image, nodes)))
    try:
        yield ns
    finally:
        cluster.kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force",
                        "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s", check=False)


def pod(cluster, ns: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)


def pod_ready(cluster, ns: str, name: str) -> str:
    conditions = pod(cluster, ns, name)["status"].get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "")


def probes(cluster, ns: str, name: str) -> dict[str, str] | None:
    """What the pod's probes answered, once all of them did (its current container)."""
    out = cluster.kubectl("logs", name, "-n", ns, check=False).stdout
    if "probes done" not in out:
        return None
    found = (line.split(" ", 2) for line in out.splitlines() if line.startswith("probe "))
    return {parts[1]: parts[2] for parts in found}


def test_the_second_node_is_ready_under_its_own_name(cluster, two_nodes) -> None:
    print(f"node 2 booted in {two_nodes.extra.timings['boot']:.1f} s "
          f"(images {two_nodes.extra.timings['images']:.1f} s)")
    assert two_nodes.ready(two_nodes.first) == "True"
    assert two_nodes.ready(two_nodes.second) == "True"
    node = json.loads(cluster.kubectl("get", "node", two_nodes.second, "-o", "json").stdout)
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "127.0.0.2"


def test_pods_on_each_node_reach_the_other_by_dns_name_service_and_apiserver(
        cluster, two_nodes, pods) -> None:
    for name, node, subnet in (("one", two_nodes.first, "10.77.0."),
                               ("two", two_nodes.second, "10.77.1.")):
        answers = wait_for(functools.partial(probes, cluster, pods, name), 90,
                           f"pod {name}'s probes")
        assert two_nodes.node_of(pods, name) == node
        assert pod(cluster, pods, name)["status"]["podIP"].startswith(subnet)
        peer = "two" if name == "one" else "one"
        assert answers == {"pod": peer, "service": peer, "apiserver": "ok"}, (name, answers)


def test_a_node_that_loses_power_is_noticed_and_rejoins(cluster, two_nodes, pods) -> None:
    wait_for(lambda: pod_ready(cluster, pods, "two") == "True", 60, "pod two Ready")
    before = pod(cluster, pods, "two")["status"]["containerStatuses"][0]["containerID"]
    stopped = time.monotonic()
    two_nodes.stop_second()
    assert not [h for h in hierarchies() if (h / CGROUP).exists()], "node 2's cgroups survived"
    assert pod(cluster, pods, "two")["status"]["phase"] == "Running"  # the API cannot know yet
    wait_for(lambda: two_nodes.ready(two_nodes.second) == "Unknown", 30, "node 2 Unknown",
             interval=0.2)
    noticed = time.monotonic() - stopped
    wait_for(lambda: pod_ready(cluster, pods, "two") == "False", 10, "pod two not Ready")
    assert pod(cluster, pods, "two")["status"]["phase"] == "Running"
    assert two_nodes.ready(two_nodes.first) == "True"
    assert pod_ready(cluster, pods, "one") == "True"

    booted = time.monotonic()
    two_nodes.start_second()
    rejoined = time.monotonic() - booted
    wait_for(lambda: pod_ready(cluster, pods, "two") == "True", 60, "pod two running again")
    again = time.monotonic() - booted
    print(f"node 2 Unknown {noticed:.1f} s after it lost power; Ready {rejoined:.1f} s after "
          f"booting again, its pod Ready again after {again:.1f} s")
    assert pod(cluster, pods, "two")["status"]["containerStatuses"][0]["containerID"] != before
    assert wait_for(lambda: probes(cluster, pods, "two"), 60, "pod two's probes") == {
        "pod": "one", "service": "one", "apiserver": "ok"}
    assert noticed < 20


def test_nothing_is_left_after_removal(cluster, two_nodes, pods) -> None:
    extra = two_nodes.extra
    extra.remove()
    assert cluster.kubectl("get", "node", extra.name, check=False).returncode != 0
    assert json.loads(cluster.kubectl("get", "pods", "-n", pods, "--field-selector",
                                      f"spec.nodeName={extra.name}", "-o", "json").stdout)["items"] == []
    mounts = Path("/proc/self/mounts").read_text()
    assert str(extra.dir) not in mounts and str(extra.run_dir) not in mounts
    assert not extra.dir.exists() and not extra.run_dir.exists()
    assert not [h for h in hierarchies() if (h / CGROUP).exists()]
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert HOLDER not in ps and str(extra.socket) not in ps and str(extra.dir) not in ps
    assert two_nodes.ready(two_nodes.first) == "True"
