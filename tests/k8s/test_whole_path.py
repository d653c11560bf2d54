"""The whole path on the cluster, as a user walks it: a notebook run by papermill trains on
two worker pods, the job's model comes home, is exported, built into an image pushed to a
registry, deployed with two replicas that the node pulls through the registry API, and a
pod in the cluster gets predictions through the Service, answered by both replicas.

Nothing is stood in for: the kernel is a real Jupyter kernel (papermill), the pods train
TensorFlow under MultiWorkerMirroredStrategy, the registry is Debian's docker-registry,
containerd pulls from it (tests/cluster/network_services.py: a plain-http mirror entry) and
kube-proxy routes the Service's ClusterIP (iptables mode). The base of the built image is
the pods' own image, pushed to that registry once per session (``registry_base``).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

import cellship
from cellship.cli.main import main as cli
from cellship.deployment import manifests as mf
from cellship.kube.client import connect
from tests.integration.jobs import TRAIN_DIGITS
from tests.k8s.support import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.kernel, pytest.mark.tf, pytest.mark.timeout(900)]

REQUESTS = 40  # through the ClusterIP; kube-proxy picks a replica per connection

# Runs in a pod: predictions through the Service, by ClusterIP and by DNS name, a new
# connection per request (so each is balanced on its own); prints what came back.
CLIENT = r'''
import collections, json, os, urllib.request
body = os.environ["REQUEST"].encode()
seen = {}
first = None
for where, host, count in (("ip", os.environ["CLUSTER_IP"], int(os.environ["N"])),
                           ("dns", os.environ["DNS_NAME"], 2)):
    codes = collections.Counter()
    for _ in range(count):
        request = urllib.request.Request(f"http://{host}:8501/v1/models/digits:predict", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                codes[str(answer.status)] += 1
                first = first or json.loads(answer.read())
        except Exception as err:
            codes[type(err).__name__ + ": " + str(err)[:100]] += 1
    seen[where] = dict(codes)
print("CLIENT " + json.dumps({"codes": seen, "first": first}), flush=True)
'''


def _notebook(path: Path, cluster, namespace: str) -> Path:
    magic = (f"%%train --backend kubernetes --workers 2 --name whole-path "
             f"--image {cluster.image} --image-pull-policy Never --namespace {namespace} "
             f"--context {cluster.context}\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext cellship"),
                nbformat.v4.new_code_cell(magic + TRAIN_DIGITS.format(epochs=2, sleep=0))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert cli(list(args)) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def _predict_counts(ip: str) -> float:
    text = urllib.request.urlopen(f"http://{ip}:8501/metrics", timeout=10).read().decode()
    found = re.search(r'^cellship_serving_requests_total\{(?=[^}]*code="200")(?=[^}]*verb="predict")'
                      r'[^}]*\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _client_pod(namespace: str, image: str, env: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "client", "namespace": namespace},
            "spec": {"restartPolicy": "Never",
                     "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
                     "containers": [{"name": "client", "image": image, "imagePullPolicy": "Never",
                                     "command": ["python3", "-c", CLIENT],
                                     "env": [{"name": k, "value": v} for k, v in env.items()]}]}}


def test_notebook_to_two_served_replicas_through_a_registry_and_the_service(
        cluster, namespace, node_registry, registry_base, tmp_path: Path, capsys) -> None:
    import papermill
    from sklearn.datasets import load_digits

    # 1. The notebook trains on two worker pods; the job's files come home when it ends.
    started = time.monotonic()
    notebook = _notebook(tmp_path / "train.ipynb", cluster, namespace)
    papermill.execute_notebook(str(notebook), str(tmp_path / "train-out.ipynb"),
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    out = "".join(o.get("text", "") for o in nbformat.read(tmp_path / "train-out.ipynb", 4)
                  .cells[1].outputs)
    (job,) = cellship.jobs()  # the store the kernel wrote (CELLSHIP_HOME is the test's)
    assert job.status == "succeeded", out[-3000:]
    assert "backend kubernetes" in out and "2 workers" in out, out[-3000:]
    done = {(line.replica, line.text.split()[1]) for line in job.logs()
            if line.text.startswith("epoch-done")}
    assert {("worker 0", "2"), ("worker 1", "2")} <= done, done
    trained = time.monotonic() - started

    # 2. Export the job's SavedModel, build an image on the pods' base and push it.
    exported = _cli_json(capsys, "export", "--job", job.id, "--name", "digits", "--json")
    assert exported["name"] == "digits", exported
    tag = f"{node_registry.address}/whole-path/digits:v1"
    built = _cli_json(capsys, "build", "digits", "--base", registry_base, "--tag", tag,
                      "--kind", "python", "--deps-from-base", "--json", "-q")
    assert built["pushed"] and built["digest"].startswith("sha256:"), built

    # 3. Deploy two replicas; the node pulls the image through the registry.
    deployed = _cli_json(capsys, "deploy", tag, "--name", "digits", "--replicas", "2",
                         "-n", namespace, "--context", cluster.context, "--kind", "deployment",
                         "--image-pull-policy", "Always", "--timeout", "300", "--json", "-q")
    assert (deployed["ready"], deployed["replicas"]) == (2, 2), deployed
    client = connect(cluster.context)
    pods = [p for p in client.list("Pod", namespace, mf.selector("digits"))
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    repository = tag.rsplit(":", 1)[0]
    for pod in pods:
        (status,) = pod["status"]["containerStatuses"]
        assert status["imageID"] == f"{repository}@{built['digest']}", status
    for pod in pods:
        pulled = [e for e in client.events("Pod", namespace, pod["metadata"]["name"])
                  if e.get("reason") == "Pulled" and tag in e.get("message", "")]
        assert pulled, f"no Pulled event of {tag} for {pod['metadata']['name']}"
    manifest_gets = re.findall(r"GET /v2/whole-path/digits/manifests/",
                               (node_registry.root / "registry.log").read_text(errors="replace"))
    assert manifest_gets, "the registry served no manifest of the image"

    # 4. A pod in the cluster calls the Service by ClusterIP (and by DNS name).
    service = client.get("Service", namespace, "digits")
    cluster_ip = service["spec"]["clusterIP"]
    image = load_digits().images[0] / 16.0
    request = json.dumps({"instances": [[[[float(v)] for v in row] for row in image]]})
    client.create(_client_pod(namespace, cluster.image, {
        "REQUEST": request, "CLUSTER_IP": cluster_ip, "N": str(REQUESTS),
        "DNS_NAME": f"digits.{namespace}.svc.cluster.local"}))
    wait_for(lambda: client.get("Pod", namespace, "client")["status"].get("phase")
             in ("Succeeded", "Failed"), 180, "the client pod to finish")
    log = cluster.kubectl("logs", "client", "-n", namespace).stdout
    answer = json.loads(log[log.index("CLIENT ") + len("CLIENT "):])
    assert answer["codes"] == {"ip": {"200": REQUESTS}, "dns": {"200": 2}}, answer
    (prediction,) = answer["first"]["predictions"]
    assert len(prediction) == 10 and abs(sum(prediction) - 1.0) < 1e-3, answer["first"]

    # 5. Both replicas answered: their own /metrics count the predictions between them.
    counts = [_predict_counts(p["status"]["podIP"]) for p in pods]
    assert all(c > 0 for c in counts) and sum(counts) == REQUESTS + 2, counts
    print(f"trained in {trained:.0f} s; whole path in {time.monotonic() - started:.0f} s; "
          f"requests per replica {counts}")

    assert cli(["undeploy", "digits", "-n", namespace, "--context", cluster.context]) == 0
