"""A namespace that enforces the Pod Security Standards' "restricted" profile admits and
runs every kind of cellship pod, each on a read-only root: a training job (chief with its
keeper sidecar), a batch run's Job and a served model's Deployment.

Who enforces. The test cluster is Kubernetes 1.20: its apiserver has no PodSecurity
admission plugin (1.22+; ``kube-apiserver --help`` lists PodSecurityPolicy, not
PodSecurity), and the upstream pod-security-admission webhook cannot be built here (no Go
module proxy). So this module serves the profile itself as a real validating admission
webhook (tests/pod_security.py, the checker the unit tests prove field by field), bound
to namespaces labelled ``pod-security.kubernetes.io/enforce=restricted`` as the upstream
plugin is. The API server sends it every pod as created, after defaulting, including the
pods the Job and ReplicaSet controllers make, and refuses what it refuses; the first test
shows it does refuse.

Cost: one TF import per workload, run side by side (the training job is asynchronous).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest

import cellship
from cellship.deployment import deploy, undeploy
from cellship.kube.client import connect
from tests import pod_security as pss
from tests.integration.jobs import TRAIN_DIGITS
from tests.integration.test_batch import make_notebook
from tests.k8s.support import options
from tests.k8s.test_deploy import _post, model_dir  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.k8s, pytest.mark.tf, pytest.mark.kernel, pytest.mark.timeout(420)]

ENFORCE = "pod-security.kubernetes.io/enforce"
WEBHOOK = "restricted.pod-security.cellship.test"
# What the programs learn about their root and scratch, printed where each kind shows it.
PROBE = '''
import errno as _errno, os as _os, tempfile as _tempfile
try:
    open("/cellship-probe", "w")
    _root = "writable"
except OSError as _e:
    _root = _errno.errorcode[_e.errno]
with _tempfile.NamedTemporaryFile() as _f:
    _scratch = _f.name
print("probe", _root, _os.path.expanduser("~"), _scratch, flush=True)
'''
# What a program that met the read-only root says when it falls back (Keras, TensorBoard,
# Jupyter's runtime dir, IPython's profile, tempfile): none of it may appear in a log.
REFUSED_WRITES = ("Read-only file system", "Permission denied", "is not writable",
                  "falling back", "Falling back")
RECORD = """
import cellship
cellship.record("root", _root)
cellship.record("home", _os.path.expanduser("~"))
"""


class Reviews:
    """The pods the webhook saw: (namespace, generated or given name, allowed, message)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool, str]] = []
        self.lock = threading.Lock()

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        request = body["request"]
        pod = request["object"]
        found = pss.check_object(pod)
        meta = pod.get("metadata") or {}
        message = "; ".join(str(v) for v in found)
        with self.lock:
            self.seen.append((request.get("namespace", ""),
                              meta.get("name") or meta.get("generateName", ""), not found, message))
        response: dict[str, Any] = {"uid": request["uid"], "allowed": not found}
        if found:
            response["status"] = {"code": 403, "reason": "Forbidden",
                                  "message": f"violates PodSecurity \"restricted:latest\": {message}"}
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": response}

    def admitted(self, namespace: str) -> list[str]:
        with self.lock:
            return [name for ns, name, ok, _ in self.seen if ns == namespace and ok]


def _certificate(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "webhook.key", folder / "webhook.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return key, cert


@pytest.fixture(scope="module")
def webhook(cluster, tmp_path_factory) -> Iterator[Reviews]:
    """The profile as a validating webhook on 127.0.0.1, registered for labelled namespaces."""
    reviews = Reviews()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = json.dumps(reviews.review(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    key, cert = _certificate(tmp_path_factory.mktemp("webhook"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK},
        "webhooks": [{
            "name": WEBHOOK, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"url": f"https://127.0.0.1:{server.server_address[1]}/validate",
                             "caBundle": base64.b64encode(cert.read_bytes()).decode()},
            "namespaceSelector": {"matchLabels": {ENFORCE: "restricted"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                       "operations": ["CREATE", "UPDATE"]}]}]}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(config))
    try:
        yield reviews
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, check=False)
        server.shutdown()
        server.server_close()


@pytest.fixture
def restricted(cluster, namespace, webhook) -> str:
    cluster.kubectl("label", "namespace", namespace, f"{ENFORCE}=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")
    return namespace


def test_the_restricted_namespace_refuses_a_pod_that_breaks_the_profile(cluster, restricted) -> None:
    # (privileged: true never gets this far: the harness's --allow-privileged=false refuses it.)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loose"},
           "spec": {"containers": [{"name": "c", "image": cluster.image,
                                    "imagePullPolicy": "Never", "command": ["true"],
                                    "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
                    "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}
    out = cluster.kubectl("apply", "-n", restricted, "-f", "-", input=json.dumps(pod), check=False)
    assert out.returncode != 0
    assert f'admission webhook "{WEBHOOK}" denied the request' in out.stderr, out.stderr
    for field in ("spec.containers[0].securityContext.capabilities.add",
                  "spec.containers[0].securityContext.allowPrivilegeEscalation",
                  "spec.volumes[0].hostPath", "spec.containers[0].securityContext.runAsNonRoot",
                  "spec.containers[0].securityContext.readOnlyRootFilesystem"):
        assert field in out.stderr, out.stderr


def _refused_writes(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(w in line for w in REFUSED_WRITES)]


def _claim_for(cluster, namespace: str, folder: Path) -> tuple[str, str]:
    """A PersistentVolume over ``folder`` (cluster-scoped: the pod sees only its claim, a
    volume type the profile allows, unlike the hostPath test_deploy mounts) and its claim."""
    pv = f"models-{uuid.uuid4().hex[:8]}"
    objects = [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                  "hostPath": {"path": str(folder), "type": "Directory"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "models", "namespace": namespace},
         "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": pv,
                  "resources": {"requests": {"storage": "1Gi"}}}}]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": objects}))
    return pv, "models"


def test_training_batch_and_serving_run_admitted_on_a_read_only_root(
        cluster, restricted, webhook, model_dir, tmp_path: Path) -> None:  # noqa: F811
    namespace = restricted
    job = cellship.submit(PROBE + TRAIN_DIGITS.format(epochs=1, sleep=0), workers=1,
                          name="restricted", backend="kubernetes",
                          kubernetes=options(cluster, namespace), timeout=300)
    client = connect(cluster.context)
    pv, claim = _claim_for(cluster, namespace, model_dir)
    try:
        result = deploy(cluster.image, "affine", namespace=namespace, context=cluster.context,
                        model_path="/models/affine", volumes=[f"{claim}:/models"],
                        image_pull_policy="Never", cpu="100m", memory="256Mi", timeout=240,
                        kind="deployment", client=client)
        assert result.ready == 1
        (pod,) = [p for p in client.list("Pod", namespace, "cellship.io/deployment=affine")
                  if not p["metadata"].get("deletionTimestamp")]
        answer = _post(f"http://{pod['status']['podIP']}:8501/v1/models/affine:predict",
                       {"instances": [[1.0, 2.0]]})
        assert answer["predictions"] == [pytest.approx([0.5])]
        served = cluster.kubectl("exec", "-n", namespace, pod["metadata"]["name"], "--",
                                 "python3", "-c", PROBE).stdout
        assert "probe EROFS /tmp /tmp/" in served, served
        server_log = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
        assert not _refused_writes(server_log), server_log[-3000:]
        undeploy("affine", namespace=namespace, client=client)
    finally:
        cluster.kubectl("delete", "pvc", claim, "-n", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)

    notebook = make_notebook(tmp_path / "probe.ipynb", PROBE + RECORD, parameters="")
    batch = cellship.batch(str(notebook), name="restricted", backend="kubernetes",
                           kubernetes=options(cluster, namespace))
    (run,) = batch.record.runs
    assert run.status == "succeeded", (run.error, Path(run.log_path).read_text()[-3000:])
    assert batch.results()[["root", "home"]].values.tolist() == [["EROFS", "/tmp"]]
    out = nbformat.read(run.output_path, as_version=4)
    assert "probe EROFS /tmp /tmp/" in json.dumps(out.cells[-1].outputs)
    run_log = Path(run.log_path).read_text()
    assert not _refused_writes(run_log), run_log[-3000:]

    record = job.wait(timeout=300)
    lines = [line.text for line in job.logs()]
    assert record.status == "succeeded", (record.error, lines[-30:])
    assert any(text.startswith("probe EROFS /tmp /tmp/") for text in lines), lines[:30]
    noisy = [line.text for line in job.logs(tf_noise=True)]
    assert not _refused_writes("\n".join(noisy)), noisy[-40:]
    assert [m.name for m in job.saved_models()] == ["digits"]
    assert list(job.logdir.rglob("events.out.tfevents.*")), "the keeper's files came home"
    # The real cluster's bearer token went out with every request: it is in no ConfigMap
    # of the namespace (the job's program and shim) and no byte of the store or job dirs.
    token = cluster.local.token.encode()
    configmaps = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "json").stdout
    assert "cellship.io/job-id" in configmaps and token not in configmaps.encode()
    home = Path(os.environ["CELLSHIP_HOME"])
    assert [p for p in home.rglob("*") if p.is_file() and token in p.read_bytes()] == []
    job.delete()

    # Every pod of the three passed through the webhook (the controllers' pods included).
    admitted = webhook.admitted(namespace)
    assert any(name.startswith("restricted-") and "-worker-0" in name for name in admitted), admitted
    assert any(name.startswith("affine-") for name in admitted), admitted
    assert any(name.startswith(f"restricted-{batch.id.lower()}-0-")  # the Job's pod
               for name in admitted), admitted
