"""The cluster tier: a real single-node Kubernetes (tests/cluster/harness.py), booted once
per session, with the training image (python3 + TensorFlow + papermill + cellship, built
by cellship's own image code: tests/cluster/image.py) imported into its node.

Every test of this tier is marked ``k8s`` (heavy; CI runs it). The session's KUBECONFIG
points at the cluster, so cellship's KubeClient finds it as a user's kubectl would.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.cluster.harness import GATEWAY, NODE, LocalCluster, build_binaries, missing_prerequisites
from tests.cluster.second_node import ExtraNode


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.k8s)


@dataclass
class Cluster:
    """What tests get: the running cluster, how to reach it, the image pods run."""

    local: LocalCluster
    image: str
    archive: Path | None = None  # the image's archive (what a second node imports)

    @property
    def kubeconfig(self) -> Path:
        return self.local.kubeconfig

    @property
    def context(self) -> str:
        return self.local.context

    def kubectl(self, *args: str, check: bool = True, **kwargs):
        return self.local.kubectl(*args, check=check, **kwargs)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    why = missing_prerequisites()
    if why is not None and os.geteuid() != 0:
        pytest.skip(why)
    assert why is None, why
    from tests.cluster.image import training_image_archive

    binaries = build_binaries()
    local = LocalCluster(binaries)
    atexit.register(local.stop)  # also when the session dies before its finalizers
    # start() takes the machine lock: the image archive is made (or found) after it, so a
    # build of another session waiting for the lock cannot prune it meanwhile.
    local.start()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(local.kubeconfig)
    try:
        archive, ref = training_image_archive()
        local.import_image(archive, ref)
        yield Cluster(local, ref, archive)
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        local.stop()
        atexit.unregister(local.stop)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted (and waited for) afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30  # pods are refused until its ServiceAccount exists
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name,
                          check=False).returncode != 0:
        assert time.monotonic() < deadline, f"namespace {name} got no default ServiceAccount"
        time.sleep(0.2)
    try:
        yield name
    finally:
        # The test has made its own checks by now: pods left (a crashed replica being
        # restarted, a program that ignores SIGTERM) need not sit out their 30 s grace
        # before the namespace can go.
        cluster.kubectl("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force",
                        "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=90s",
                        check=False)


@dataclass
class NodeRegistry:
    """A registry the node pulls from: push to ``f"{address}/name:tag"``, run that reference."""

    address: str  # host:port on 127.0.0.1, plain http
    root: Path  # its storage and logs
    pod_address: str  # the same registry (shared storage) on the bridge: pods push here


@pytest.fixture(scope="session")
def node_registry(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRegistry]:
    """A plain-http registry (Debian's docker-registry on 127.0.0.1) the node pulls from: an
    image pushed to ``address/name:tag`` runs in a pod under that same reference, pulled
    through the registry API by containerd (see tests/cluster/network_services.py). A second
    process serves the same storage on the bridge (``pod_address``), for pods that push."""
    from tests.integration import images_support

    if images_support.missing_tools("docker-registry"):
        pytest.skip("docker-registry is not installed (make system-deps)")
    root = tmp_path_factory.mktemp("node-registry")
    registry = images_support.start_registry(root)
    try:
        for_pods = images_support.start_registry(root, bind=GATEWAY,
                                                 storage=root / "data", name="for-pods")
    except BaseException:
        registry.stop()
        raise
    for host in (registry.host, for_pods.host):
        cluster.local.pull_from(host)
    try:
        yield NodeRegistry(registry.host, registry.root, for_pods.host)
    finally:
        for_pods.stop()
        registry.stop()


@pytest.fixture(scope="session")
def registry_base(cluster: Cluster, node_registry: NodeRegistry) -> str:
    """The pods' image (python3, TensorFlow, cellship) in :func:`node_registry`, as a base
    for ``cellship build``: pushed once per session with skopeo from the archive the node
    imported. skopeo copies the compressed layers as they are, so their digests are the
    ones containerd already holds: a pull of an image built on it fetches the manifest,
    the config and the new layers through the registry, and finds the base's layers in its
    content store, as a node that ran the base before would."""
    from tests.cluster.image import training_image_archive

    archive, ref = training_image_archive()
    target = f"{node_registry.address}/cellship-test/train:{ref.rsplit(':', 1)[1]}"
    result = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                             f"oci-archive:{archive}", f"docker://{target}"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"skopeo copy to {target}: {result.stderr[-2000:]}"
    return target


@dataclass
class TwoNodes:
    """The cluster with a second node: ``first`` (the session's node) and ``second``
    (tests/cluster/second_node.py), which tests can power off and on again."""

    cluster: Cluster
    extra: ExtraNode

    @property
    def first(self) -> str:
        return NODE

    @property
    def second(self) -> str:
        return self.extra.name

    @property
    def names(self) -> tuple[str, str]:
        return self.first, self.second

    def stop_second(self) -> None:
        """Node 2 loses power (every process of it SIGKILLed; its pods stay Running in the
        API until the node controller notices, in about 10 s)."""
        self.extra.stop()

    def start_second(self, timeout: float = 120.0) -> None:
        """Node 2 boots again under the same name; returns once it is Ready."""
        self.extra.start(timeout=timeout)

    def ready(self, node: str) -> str:
        """A node's Ready condition: "True", "False", "Unknown" (lost) or "" (no node)."""
        out = self.cluster.kubectl("get", "node", node, "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                                   check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def node_of(self, namespace: str, pod: str) -> str:
        """The node ``pod`` is bound to ("" while unscheduled or when there is no such pod)."""
        out = self.cluster.kubectl("get", "pod", pod, "-n", namespace, "-o",
                                   "jsonpath={.spec.nodeName}", check=False)
        return out.stdout.strip() if out.returncode == 0 else ""


@pytest.fixture(scope="module")
def two_nodes(cluster: Cluster) -> Iterator[TwoNodes]:
    """A second node (127.0.0.2, with the training image) for one test module; removed
    afterwards, since other modules expect every pod on node 127.0.0.1."""
    assert cluster.archive is not None
    extra = cluster.local.add_node(images=((cluster.archive, cluster.image),))
    try:
        yield TwoNodes(cluster, extra)
    finally:
        extra.remove()
