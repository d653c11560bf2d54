"""Without --image a cluster job runs in the official TensorFlow image of the kernel's
version plus a tf-keras layer cellship builds and pushes to --registry; an official image
given as --image is refused before any object exists.

The official image cannot be pulled here (no Docker Hub), so a stand-in takes its place in
the node's registry, through ``$CELLSHIP_TF_IMAGE_REPOSITORY`` (the knob for a registry
mirror of Docker Hub): the pods' own image (python3, TensorFlow, tf-keras) with one more
layer of OCI whiteouts that deletes tf-keras, so it lacks exactly what the official image
lacks. A pod proves the stand-in cannot import tf_keras; then a 2-worker Keras job under
MultiWorkerMirroredStrategy trains in the image cellship made from it, pulled by the node
through the registry.
"""

from __future__ import annotations

import json
import time
from importlib import metadata

import pytest

import cellship
from cellship.errors import UsageError
from cellship.images import pydeps
from cellship.images.builder import append
from cellship.images.layers import Entry, parents, write_layer
from cellship.kube.podspec import CONTAINER
from cellship.train.kubernetes.default_image import REPOSITORY_ENV, kernel_tf_version
from tests.integration.jobs import TRAIN_DIGITS
from tests.k8s.support import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.tf, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def official(node_registry, registry_base, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``<registry>/tensorflow/tensorflow:<version>``: the pods' image with tf-keras deleted."""
    site, tf_keras = pydeps.SITE, metadata.version("tf-keras")
    entries = [*parents(f"{site}/x"), Entry(f"{site}/.wh.tf_keras", data=b""),
               Entry(f"{site}/.wh.tf_keras-{tf_keras}.dist-info", data=b"")]
    layer = write_layer(entries, tmp_path_factory.mktemp("stand-in") / "whiteouts.tar.gz",
                        created_by="test stand-in for the official image: no tf-keras")
    ref = f"{node_registry.address}/tensorflow/tensorflow:{kernel_tf_version()}"
    append(registry_base, ref, [layer], lambda _config: None)
    return ref


def _pod(namespace: str, name: str, image: str, code: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 1000},
                     "containers": [{"name": "c", "image": image, "imagePullPolicy": "Always",
                                     "command": ["python3", "-c", code]}]}}


def _objects(cluster, namespace: str) -> list[str]:
    out = cluster.kubectl("get", "pods,services,configmaps", "-n", namespace, "-l",
                          "app.kubernetes.io/managed-by=cellship", "-o", "json").stdout
    return [f"{o['kind']}/{o['metadata']['name']}" for o in json.loads(out)["items"]]


def test_the_official_image_is_refused_and_without_image_cellship_makes_one_that_trains(
        cluster, namespace, node_registry, official, monkeypatch, capsys) -> None:
    from cellship.kube.client import connect

    client = connect(cluster.context)
    client.create(_pod(namespace, "probe", official, "import tf_keras"))
    wait_for(lambda: client.get("Pod", namespace, "probe")["status"].get("phase")
             in ("Succeeded", "Failed"), 120, "the probe pod to end")
    assert client.get("Pod", namespace, "probe")["status"]["phase"] == "Failed"
    assert "No module named 'tf_keras'" in cluster.kubectl("logs", "probe", "-n", namespace).stdout

    monkeypatch.setenv(REPOSITORY_ENV, official.rsplit(":", 1)[0])
    k8s = {"namespace": namespace, "context": cluster.context}
    with pytest.raises(UsageError, match="Keras 3 only") as refused:
        cellship.submit("print(1)\n", workers=1, backend="kubernetes",
                        kubernetes=k8s | {"image": official})
    assert "--registry" in str(refused.value)
    assert _objects(cluster, namespace) == [] and cellship.jobs() == []

    started = time.monotonic()
    job = cellship.submit(TRAIN_DIGITS.format(epochs=2, sleep=0), workers=2, name="default-image",
                          backend="kubernetes", timeout=400,
                          kubernetes=k8s | {"registry": f"{node_registry.address}/team"})
    said = capsys.readouterr().err
    assert f"no --image given: the job runs in {official} plus tf-keras" in said, said
    assert "built in" in said and f"{node_registry.address}/team/cellship-tensorflow@sha256:" in said
    image = job.record.spec["kubernetes"]["image"]
    record = job.wait(timeout=400)
    assert record.status == "succeeded", (record.error, [l.text for l in job.logs()][-20:])
    done = {(line.replica, line.text.split()[1]) for line in job.logs()
            if line.text.startswith("epoch-done")}
    assert {("worker 0", "2"), ("worker 1", "2")} <= done, done
    pods = client.list("Pod", namespace, f"cellship.io/job-id={job.id}")
    assert len(pods) == 2
    for pod in pods:
        container = next(c for c in pod["status"]["containerStatuses"] if c["name"] == CONTAINER)
        assert container["imageID"].endswith(image.rsplit("@", 1)[1]), container
    print(f"default image made and trained in {time.monotonic() - started:.0f} s")

    # A second job finds the image: nothing is built again.
    again = cellship.submit("print('again')\n", workers=1, backend="kubernetes", detached=True,
                            kubernetes=k8s | {"registry": f"{node_registry.address}/team"})
    said = capsys.readouterr().err
    assert "made by an earlier job, found" in said and image in said, said
    assert again.record.spec["kubernetes"]["image"] == image
    again.cancel(now=True)

