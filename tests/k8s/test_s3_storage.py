"""Object storage on the real cluster: a 2-worker job whose ``--k8s-output-dir`` is
``s3://`` (keys from ``--storage-secret``) writes its model into a real S3 server
(``rclone serve s3``, tests/s3_server.py) bound to the cluster bridge's gateway so the pods
reach it; ``cellship export --job`` works from what came back from the bucket;
``cellship deploy s3://.../digits`` serves it with no image build (an init step downloads
it) and answers :predict; a wrong secret is refused at submit with no pod created."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import cellship
from cellship.cli.main import main as cli
from cellship.deployment import deploy, undeploy
from cellship.deployment import manifests as mf
from cellship.kube.client import connect
from cellship.storage.errors import StorageError
from tests import s3_server
from tests.integration.jobs import TRAIN_DIGITS
from tests.k8s.support import options

pytestmark = [pytest.mark.k8s, pytest.mark.tf, pytest.mark.timeout(600)]

SECRET = "s3-creds"


@pytest.fixture(scope="module")
def bucket_server(cluster, tmp_path_factory: pytest.TempPathFactory):
    server = s3_server.start(tmp_path_factory.mktemp("s3"), host=s3_server.BRIDGE_GATEWAY)
    try:
        server.bucket("runs")
        yield server
    finally:
        server.stop()


def make_secret(cluster, namespace: str, server, name: str = SECRET,
                secret_key: str | None = None) -> None:
    values = server.env() | ({"AWS_SECRET_ACCESS_KEY": secret_key} if secret_key else {})
    cluster.kubectl("create", "secret", "generic", name, "-n", namespace,
                    *[f"--from-literal={k}={v}" for k, v in values.items()])


def objects(cluster, namespace: str) -> str:
    return cluster.kubectl("get", "pods,configmaps,services", "-n", namespace, "-l",
                           "app.kubernetes.io/managed-by=cellship", "-o", "name").stdout.strip()


def test_a_wrong_secret_is_refused_at_submit_and_no_pod_is_made(cluster, namespace,
                                                                bucket_server) -> None:
    make_secret(cluster, namespace, bucket_server, name="bad-creds", secret_key="wrong")
    with pytest.raises(StorageError) as err:
        cellship.submit("print('never runs')", workers=2, name="wrong", backend="kubernetes",
                        kubernetes=options(cluster, namespace, output_dir="s3://runs/wrong",
                                           storage_secret="bad-creds"))
    text = str(err.value)
    assert "bucket runs" in text and bucket_server.endpoint in text, text
    assert f"Secret bad-creds in namespace {namespace}" in text, text
    assert objects(cluster, namespace) == ""


def test_a_job_writes_the_bucket_exports_from_it_and_deploys_straight_from_it(
        cluster, namespace, bucket_server) -> None:
    make_secret(cluster, namespace, bucket_server)
    prefix = f"s3://runs/{namespace}/digits-run"
    job = cellship.submit(TRAIN_DIGITS.format(epochs=2, sleep=0), workers=2, name="digits",
                          backend="kubernetes", timeout=400,
                          kubernetes=options(cluster, namespace, output_dir=prefix,
                                             storage_secret=SECRET))
    record = job.wait(timeout=480)
    logs = [line.text for line in job.logs()]
    assert record.status == "succeeded", (record.error, logs[-20:])
    # In the bucket: the SavedModel, the event files, the backup, the manifest.
    s3 = bucket_server.client()
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="runs", Prefix=f"{namespace}/digits-run/") for o in page.get("Contents") or ()}
    run = f"{namespace}/digits-run"
    assert f"{run}/digits/saved_model.pb" in keys, sorted(keys)[:20]
    assert any(k.startswith(f"{run}/.cellship/tensorboard/train/events.out.tfevents") for k in keys)
    assert f"{run}/.cellship/jobs/{job.id}.json" in keys
    # Home from the bucket, in a local job's layout; no key in anything cellship keeps.
    assert [m.name for m in job.saved_models()] == ["digits"]
    assert list((job.logdir / "train").glob("events.out.tfevents.*"))
    home = Path(record.job_dir)
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert bucket_server.secret_key.encode() not in path.read_bytes(), path
    configmap = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "json").stdout
    assert bucket_server.secret_key not in configmap
    assert cli(["export", "--job", job.id, "--name", "digits-s3"]) == 0

    # Served straight from the bucket: no image build, an init step downloads it.
    client = connect(cluster.context)
    lines: list[str] = []
    result = deploy(f"{prefix}/digits", "digits-s3", namespace=namespace, context=cluster.context,
                    image=cluster.image, storage_secret=SECRET, image_pull_policy="Never",
                    cpu="100m", memory="512Mi", timeout=300, kind="deployment",
                    progress=lines.append, client=client)
    assert (result.ready, result.model_name) == (1, "digits"), lines
    (pod,) = [p for p in client.list("Pod", namespace, mf.selector("digits-s3"))
              if not p["metadata"].get("deletionTimestamp")]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["download-model"]
    body = json.dumps({"instances": [[[[0.0]] * 8] * 8]}).encode()
    request = urllib.request.Request(f"http://{pod['status']['podIP']}:8501/v1/models/digits:predict",
                                     data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    (prediction,) = answer["predictions"]
    assert len(prediction) == 10 and sum(prediction) == pytest.approx(1.0, abs=1e-3)
    undeploy("digits-s3", namespace=namespace, client=client, timeout=120)
    job.delete()
