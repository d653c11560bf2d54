"""cellship inside the cluster, the way Zero to JupyterHub runs a single-user server: a
notebook server pod (the pods' image plus JupyterLab and jupyter-server-proxy,
tests/cluster/notebook_image.py) with a ServiceAccount bound to exactly the Role `cellship
rbac` prints, ``CELLSHIP_BACKEND=kubernetes`` in its environment as a hub admin would set
it, and no kubeconfig. The test drives that server from outside as a browser would: its
REST API and a kernel over its websocket (tests/k8s/remote_kernel.py).

In the pod: ``%%train --workers 2`` starts pods with the pod's ServiceAccount and streams
their logs into the cell; the panel's REST API there lists the job with its pods' states;
``%job ID tensorboard`` answers through the notebook server's proxy
(``TENSORBOARD_PROXY_URL``); export, build, push and deploy from inside the pod, and the
kernel gets predictions at the Service's DNS name ``<name>.<ns>.svc``.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import pytest
import requests

from cellship.cli.main import main as cli
from cellship.kube.client import connect
from tests.cluster.notebook_image import PORT, notebook_image
from tests.integration.jobs import TRAIN_DIGITS
from tests.k8s.remote_kernel import RemoteKernel
from tests.k8s.support import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.kernel, pytest.mark.tf, pytest.mark.timeout(900)]

ACCOUNT = "notebook"
USER = "alice"


@pytest.fixture(scope="module")
def notebook_ref(node_registry, registry_base, tmp_path_factory: pytest.TempPathFactory) -> str:
    return notebook_image(registry_base, node_registry.address, tmp_path_factory.mktemp("nb"))


def _server_pod(namespace: str, image: str, token: str, train_image: str) -> dict:
    env = {"CELLSHIP_BACKEND": "kubernetes", "CELLSHIP_K8S_IMAGE": train_image,
           "JUPYTERHUB_USER": USER, "JUPYTER_TOKEN": token, "CELLSHIP_VIEW": "text",
           "TENSORBOARD_PROXY_URL": "/proxy/%PORT%/", "CELLSHIP_HOME": "/tmp/cellship",
           "HOME": "/tmp"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "jupyter-alice", "namespace": namespace,
                         "labels": {"app": "jupyterhub", "component": "singleuser-server"}},
            "spec": {"serviceAccountName": ACCOUNT, "restartPolicy": "Never",
                     "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
                     "containers": [{
                         "name": "notebook", "image": image, "imagePullPolicy": "IfNotPresent",
                         "env": [{"name": k, "value": v} for k, v in env.items()],
                         "ports": [{"containerPort": PORT}],
                         "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1}}]}}


def _ready(client, namespace: str) -> str | None:
    pod = client.get("Pod", namespace, "jupyter-alice")
    if pod["status"].get("phase") == "Failed":
        raise AssertionError(f"the notebook pod failed: {pod['status']}")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in pod["status"].get("conditions") or [])
    return pod["status"].get("podIP") if ready else None


def test_a_notebook_pod_trains_watches_and_deploys_with_its_service_account(
        cluster, namespace, node_registry, registry_base, notebook_ref, capsys,
        tmp_path: Path) -> None:
    started = time.monotonic()
    client = connect(cluster.context)
    # The hub admin's part: the ServiceAccount with cellship's least Role, then the pod.
    assert cli(["rbac", "--namespace", namespace, "--service-account", ACCOUNT, "--apply",
                "--context", cluster.context]) == 0, capsys.readouterr()
    token = secrets.token_hex(16)
    client.create(_server_pod(namespace, notebook_ref, token, cluster.image))
    ip = wait_for(lambda: _ready(client, namespace), 240, "the notebook server to be ready")
    base = f"http://{ip}:{PORT}"
    headers = {"Authorization": f"token {token}"}
    assert requests.get(f"{base}/api/status", headers=headers, timeout=10).status_code == 200

    kernel = RemoteKernel(base, token)
    try:
        out, error = kernel.run("%load_ext cellship")
        assert error is None, out
        out, error = kernel.run("%%train --workers 2 --name in-cluster --image-pull-policy Never\n"
                                + TRAIN_DIGITS.format(epochs=2, sleep=0), timeout=480)
        assert error is None, out[-3000:]
        assert re.search(r"\[worker 0\] .*epoch-done 2", out), out[-3000:]
        assert re.search(r"\[worker 1\] .*epoch-done 2", out), out[-3000:]
        assert "succeeded" in out and "backend kubernetes" in out, out[-3000:]
        job_id = re.search(r"job in-cluster \(([0-9a-f]{8})\)", out).group(1)

        # Its pods were made by the pod's ServiceAccount, labelled with the hub's user.
        pods = client.list("Pod", namespace, f"cellship.io/job-id={job_id}")
        assert pods and {p["metadata"]["labels"].get("cellship.io/user") for p in pods} == {USER}

        # The panel's REST API in the notebook server lists the job with its pods' states.
        listing = requests.get(f"{base}/cellship/api/jobs", headers=headers, timeout=30).json()
        (row,) = [j for j in listing["jobs"] if j["id"] == job_id]
        assert row["status"] == "succeeded" and row["user"] == USER, row
        assert [(r["label"], r["state"]) for r in row["replicas"]] == [
            ("worker 0", "succeeded"), ("worker 1", "succeeded")], row

        # TensorBoard through the notebook server's proxy (jupyter-server-proxy).
        out, error = kernel.run(f"%job {job_id} tensorboard", timeout=120)
        assert error is None, out
        proxied = re.search(r"/proxy/(\d+)/", out)
        assert proxied, out
        runs = wait_for(lambda: _get_json(f"{base}/proxy/{proxied.group(1)}/data/runs", headers),
                        60, "TensorBoard's runs through the proxy")
        assert "in-cluster/train" in runs, runs  # the job's name, then the event files' run

        # Export, build and push, deploy: all from inside the pod; predict by DNS name.
        tag = f"{node_registry.pod_address}/in-cluster/digits:v1"
        code = f'''
import json, urllib.request
import numpy as np
from sklearn.datasets import load_digits
from cellship.cli.main import main as cli
assert cli(["export", "--job", "{job_id}", "--name", "digits"]) == 0
assert cli(["build", "digits", "--base", "{registry_base.replace(node_registry.address, node_registry.pod_address)}",
            "--tag", "{tag}", "--kind", "python", "--deps-from-base", "--insecure", "-q"]) == 0
assert cli(["deploy", "{tag}", "--name", "digits", "--model-name", "digits", "--replicas", "1",
            "--kind", "deployment", "--timeout", "300", "-q"]) == 0
image = (load_digits().images[0] / 16.0).reshape(8, 8, 1).tolist()
body = json.dumps({{"instances": [image]}}).encode()
url = "http://digits.{namespace}.svc:8501/v1/models/digits:predict"
for attempt in range(30):
    try:
        answer = json.loads(urllib.request.urlopen(urllib.request.Request(
            url, data=body, headers={{"Content-Type": "application/json"}}), timeout=10).read())
        break
    except OSError as err:
        import time; time.sleep(1)
print("PREDICTED", len(answer["predictions"][0]), round(sum(answer["predictions"][0]), 3))
'''
        out, error = kernel.run(code, timeout=420)
        assert error is None, out[-3000:]
        assert "PREDICTED 10 1.0" in out, out[-3000:]
    finally:
        kernel.close()
    deployment = client.get("Deployment", namespace, "digits")
    assert deployment["metadata"]["labels"].get("cellship.io/user") == USER
    print(f"notebook pod: whole flow in {time.monotonic() - started:.0f} s")


def _get_json(url: str, headers: dict) -> object | None:
    try:
        answer = requests.get(url, headers=headers, timeout=10)
    except requests.RequestException:
        return None
    return answer.json() if answer.status_code == 200 else None
