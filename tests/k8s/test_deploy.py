"""cellship deploy / undeploy on a real cluster (apiserver, controller-manager, scheduler,
kubelet with containerd; see /work/shared/notes/local-kubernetes.md).

Fixtures (tests/k8s/conftest.py): ``cluster`` (.kubeconfig, .context, .image: an image on
the node with Debian python3, tensorflow-cpu and cellship; pods must use imagePullPolicy
Never) and ``namespace`` (a fresh namespace, deleted afterwards); KUBECONFIG is set.

How the model gets into the pod here: the test writes a real SavedModel into a directory on
this machine (which is the node), mounts it with ``--volume DIR:/models`` (a read-only
hostPath) and deploys the cluster's image with ``--model-path /models/affine``: the pod runs
``python3 -m cellship.cli serve /models/affine`` from the image's own cellship (the
``cellship build`` image pulled from a registry is tests/k8s/test_whole_path.py's). Everything
else is the real path: Deployment + owned Service, probes against the real server, waiting,
undeploy. :predict goes through the Service's ClusterIP (kube-proxy routes it from here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cellship.deployment import DeployFailed, deploy, deployments, undeploy
from cellship.deployment import manifests as mf
from cellship.kube.api import KubeAPI
from cellship.kube.client import connect
from cellship.kube.errors import KubernetesNotFound
from tests.k8s.support import wait_for

pytestmark = pytest.mark.k8s

MAKE_MODEL = textwrap.dedent("""
    import sys
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.Variable([[2.0], [-1.0]])
            self.b = tf.Variable([0.5])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.matmul(x, self.w) + self.b}

    module = Affine()
    tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.__call__})
""")


@pytest.fixture(scope="module")
def model_dir():
    """``<dir>/affine/1`` with a SavedModel, readable by the pods' non-root uid (pytest's
    tmp_path is 0700, so not there)."""
    root = Path(tempfile.mkdtemp(prefix="cellship-deploy-models-"))
    try:
        root.chmod(0o755)
        version = root / "affine" / "1"
        version.parent.mkdir()
        subprocess.run([sys.executable, "-c", MAKE_MODEL, str(version)], check=True,
                       capture_output=True, timeout=180,
                       env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _post(url: str, body: dict, timeout: float = 30.0) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _post_or_none(url: str, body: dict) -> dict | None:
    """The answer, or None while the Service's rules are not written yet (kube-proxy syncs
    within a second or so of the pod turning ready)."""
    try:
        return _post(url, body)
    except urllib.error.URLError:
        return None


def _pods(client: KubeAPI, namespace: str, name: str) -> list[dict]:
    return client.list("Pod", namespace, mf.selector(name))


@pytest.mark.timeout(420)
def test_deploy_serves_predict_then_undeploy_leaves_nothing(cluster, namespace, model_dir):
    client = connect(cluster.context)
    lines: list[str] = []
    result = deploy(cluster.image, "affine", namespace=namespace, context=cluster.context,
                    model_path="/models/affine", volumes=[f"{model_dir}:/models"],
                    image_pull_policy="Never", cpu="100m", memory="256Mi", timeout=240,
                    kind="deployment", progress=lines.append, client=client)
    assert (result.ready, result.replicas, result.model_name) == (1, 1, "affine"), lines
    assert result.url == f"http://affine.{namespace}.svc:8501/v1/models/affine"

    dep = client.get("Deployment", namespace, "affine")
    svc = client.get("Service", namespace, "affine")
    assert svc["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    assert svc["spec"]["ports"][0]["port"] == 8501
    (listed,) = deployments(namespace=namespace, client=client)
    assert (listed.name, listed.ready, listed.desired, listed.image) == (
        "affine", 1, 1, cluster.image)

    ip = svc["spec"]["clusterIP"]
    answer = wait_for(lambda: _post_or_none(f"http://{ip}:8501/v1/models/affine:predict",
                                            {"instances": [[1.0, 2.0], [3.0, 1.0]]}),
                      15, "kube-proxy to route the Service to the ready pod")
    assert answer["predictions"] == [pytest.approx([0.5]), pytest.approx([5.5])]

    # Deploying the same name again updates it (no 409), here to 2 replicas.
    again = deploy(cluster.image, "affine", namespace=namespace, model_path="/models/affine",
                   volumes=[f"{model_dir}:/models"], image_pull_policy="Never", replicas=2,
                   timeout=240, kind="deployment", client=client)
    assert (again.action, again.ready) == ("updated", 2)

    started = time.monotonic()
    gone = undeploy("affine", namespace=namespace, client=client, timeout=120)
    assert gone.waited, time.monotonic() - started
    assert _pods(client, namespace, "affine") == []
    assert client.list("Service", namespace, mf.selector("affine")) == []
    with pytest.raises(KubernetesNotFound):
        client.get("Deployment", namespace, "affine")
    with pytest.raises(KubernetesNotFound):
        client.get("Service", namespace, "affine")


@pytest.mark.timeout(240)
def test_missing_image_is_diagnosed_quickly_not_waited_out(cluster, namespace):
    client = connect(cluster.context)
    started = time.monotonic()
    with pytest.raises(DeployFailed) as err:
        deploy("cellship.invalid/no-such-image:0", "ghost", namespace=namespace,
               model_name="ghost", image_pull_policy="Never", timeout=180, kind="deployment",
               client=client)
    took = time.monotonic() - started
    text = str(err.value)
    assert "ErrImageNeverPull" in text and "not on the node" in text, text
    assert "cellship undeploy ghost" in text
    assert took < 90, f"the diagnosis took {took:.0f} s"
    undeploy("ghost", namespace=namespace, client=client, timeout=120)
    assert _pods(client, namespace, "ghost") == []


def test_undeploy_of_an_unknown_name_is_a_sentence(cluster, namespace):
    proc = subprocess.run([sys.executable, "-m", "cellship.cli", "undeploy", "nothing-here",
                           "-n", namespace, "--context", cluster.context],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "No cellship deployment named 'nothing-here'" in proc.stderr
    assert "Traceback" not in proc.stderr
