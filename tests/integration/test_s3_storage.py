"""Object storage against a real S3 server (``rclone serve s3``, tests/s3_server.py), no
cluster: the pod's own uploader code (cellship.inside.objects) plays the chief pod, the
in-memory API (tests/unit/kube_fake.py) holds the job's objects and its Secret, and the
home side (submit's access check, fetch, the TensorBoard mirror, export --job) reads the
bucket exactly as it does for a real cluster job."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from cellship.fetch.progress import Progress
from cellship.inside.objects import Shipper, Uploader
from cellship.kube.options import KubernetesOptions
from cellship.storage import client as store
from cellship.storage import sync
from cellship.storage.credentials import Credentials
from cellship.storage.errors import StorageError
from cellship.storage.url import parse
from cellship.train.kubernetes import manifests as m
from cellship.train.kubernetes import storage
from cellship.train.kubernetes.backend import KubernetesBackend
from cellship.train.program import build_program
from cellship.train.spec import JobSpec
from tests import s3_server
from tests.unit.kube_fake import FakeKube

NS = "ml"
SECRET = "s3-creds"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    server = s3_server.start(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


def secret(server, secret_key: str | None = None, name: str = SECRET) -> dict:
    data = server.env() | ({"AWS_SECRET_ACCESS_KEY": secret_key} if secret_key else {})
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def creds(server) -> Credentials:
    return Credentials(server.access_key, server.secret_key, server.endpoint, "us-east-1",
                       source="the test's keys")


def backend_for(kube: FakeKube) -> KubernetesBackend:
    return KubernetesBackend(options=KubernetesOptions(image="tf:test", namespace=NS),
                             client_factory=lambda _options: kube)


def submit(backend: KubernetesBackend, output_dir: str, **kubernetes):
    return backend.submit(JobSpec(backend="kubernetes", name="digits", workers=2),
                          build_program("print('hello')\n"),
                          extra={"kubernetes": {"output_dir": output_dir,
                                                "storage_secret": SECRET} | kubernetes})


class Interrupt(Progress):
    """Stops a download after ``limit`` bytes, as a broken connection would."""

    def __init__(self, limit: int) -> None:
        super().__init__("test", io.StringIO())
        self.limit = limit

    def add(self, count: int) -> None:
        super().add(count)
        if self.done >= self.limit:
            raise ConnectionResetError("stream broken (test)")


def test_sync_down_resumes_a_broken_download_and_checks_every_file(s3, tmp_path: Path) -> None:
    bucket = s3.bucket("resume")
    src = tmp_path / "src"
    (src / "digits" / "variables").mkdir(parents=True)
    big = os.urandom(24 * 2**20)  # multipart (8 MiB parts) on the way up
    (src / "digits" / "variables" / "variables.data").write_bytes(big)
    (src / "digits" / "saved_model.pb").write_bytes(b"pb")
    client = s3.client()
    assert Uploader(client, [{"local": str(src), "bucket": bucket, "prefix": "run/out"}]).sync() == (
        2, len(big) + 2)
    url, dest, state = parse(f"s3://{bucket}/run/out"), tmp_path / "dest", tmp_path / "state"
    with pytest.raises(StorageError, match="the transfer broke .*stream broken.*it resumes"):
        sync.sync_down(client, url, dest, creds(s3), state_dir=state, progress=Interrupt(9 * 2**20))
    # Nothing half-written looks complete: the big file is not in place yet.
    assert not (dest / "digits" / "variables" / "variables.data").exists()
    again = sync.sync_down(client, url, dest, creds(s3), state_dir=state)
    assert again.files == 1 and 0 < again.bytes < len(big)  # resumed, not started over
    assert hashlib.sha256((dest / "digits/variables/variables.data").read_bytes()).digest() == \
        hashlib.sha256(big).digest()
    third = sync.sync_down(client, url, dest, creds(s3), state_dir=state)
    assert (third.files, third.unchanged) == (0, 2)
    # A changed object comes again; an appending sync takes only the new bytes.
    (src / "digits" / "saved_model.pb").write_bytes(b"pb2")
    Uploader(client, [{"local": str(src), "bucket": bucket, "prefix": "run/out"}]).sync()
    grown = sync.sync_down(client, url, dest, creds(s3), state_dir=state, append=True)
    assert (grown.files, grown.bytes) == (1, 1) and (dest / "digits/saved_model.pb").read_bytes() == b"pb2"


def test_a_wrong_secret_key_is_refused_at_submit_before_any_object(s3) -> None:
    s3.bucket("runs")
    kube = FakeKube()
    kube.add(secret(s3, secret_key="not-the-key"))
    backend = backend_for(kube)
    with pytest.raises(StorageError) as err:
        submit(backend, "s3://runs/digits")
    text = str(err.value)
    assert "s3://runs/digits" in text and "bucket runs" in text and s3.endpoint in text
    assert f"Secret {SECRET} in namespace {NS}" in text
    assert "secret key does not match" in text and "SignatureDoesNotMatch" in text
    assert not [c for c in kube.calls if c[0] == "create"] and backend.store.list_jobs() == []


def test_a_missing_bucket_or_secret_is_one_sentence(s3) -> None:
    kube = FakeKube()
    backend = backend_for(kube)
    with pytest.raises(StorageError, match=f"Secret {SECRET} .*does not exist in namespace {NS}"):
        submit(backend, "s3://runs/digits")
    kube.add(secret(s3))
    with pytest.raises(StorageError) as err:
        submit(backend, "s3://no-such-bucket/digits")
    text = str(err.value)
    assert "bucket no-such-bucket" in text and s3.endpoint in text and SECRET in text
    assert "does not exist there" in text
    assert not [c for c in kube.calls if c[0] == "create"]


def chief_status(keeper: str) -> dict:
    state = {"running": {}} if keeper == "running" else {"terminated": {"exitCode": 0}}
    ran = {"terminated": {"exitCode": 0, "reason": "Completed",
                          "startedAt": "2026-12-01T10:00:00Z", "finishedAt": "2026-12-01T10:00:30Z"}}
    return {"phase": "Running" if keeper == "running" else "Succeeded", "containerStatuses": [
        {"name": "keeper", "restartCount": 0, "state": state},
        {"name": "tensorflow", "restartCount": 0, "state": ran}]}


@pytest.mark.serving
@pytest.mark.timeout(300)
def test_a_job_in_the_bucket_comes_home_mirrors_tensorboard_and_exports(s3, tmp_path: Path) -> None:
    from cellship.serve.export import export_job
    from tests.integration.serving_models import digits

    s3.bucket("prod")
    kube = FakeKube()
    kube.add(secret(s3))
    backend = backend_for(kube)
    job = submit(backend, "s3://prod/team/digits-run")
    assert not list(s3.client().list_objects_v2(Bucket="prod").get("Contents") or [])  # probe gone
    prefix = f"digits-{job.id}"
    w0, w1 = f"{prefix}-worker-0", f"{prefix}-worker-1"
    keeper = kube.objects[("Pod", NS, w0)]["spec"]["containers"][1]
    plan_env = {e["name"]: e.get("value") for e in keeper["env"]}
    import json

    plan = json.loads(plan_env["CELLSHIP_UPLOADS"])
    # The chief pod, played here by the keeper's own code over folders standing for its
    # emptyDir, with the keys the Secret gives the keeper.
    pod = {m.OUTPUT_DIR: tmp_path / "pod" / "output", m.LOGDIR: tmp_path / "pod" / "tensorboard",
           m.BACKUP_DIR: tmp_path / "pod" / "backup"}
    for root in plan["roots"]:
        root["local"] = str(pod[root["local"]])
        Path(root["local"]).mkdir(parents=True)
    out = io.StringIO()
    shipper = Shipper(plan, client=s3.client(), out=out)
    running = {"phase": "Running", "containerStatuses": [
        {"name": "keeper", "restartCount": 0, "state": {"running": {}}},
        {"name": "tensorflow", "restartCount": 0, "state": {"running": {}}}]}
    kube.set_pod(NS, w0, running)
    kube.set_pod(NS, w1, {"phase": "Running", "containerStatuses": [
        {"name": "tensorflow", "restartCount": 0, "state": {"running": {}}}]})
    events = pod[m.LOGDIR] / "train" / "events.out.tfevents.1.chief"
    events.parent.mkdir()
    events.write_bytes(b"first scalar")
    shipper.tick(True)  # the live logdir round
    # At home, TensorBoard's mirror reads the bucket while the job runs (<= 10 s behind).
    mirror = backend.mirror(job, interval=0.5)
    assert mirror is not None
    local_events = Path(job.logdir) / "train" / events.name
    try:
        deadline = time.monotonic() + 10
        while not (local_events.exists() and local_events.read_bytes() == b"first scalar"):
            assert time.monotonic() < deadline, mirror.last_error
            time.sleep(0.2)
        with open(events, "ab") as handle:
            handle.write(b", second")
        shipper.next_live = 0
        shipper.tick(True)
        deadline = time.monotonic() + 10
        while local_events.read_bytes() != b"first scalar, second":
            assert time.monotonic() < deadline, mirror.last_error
            time.sleep(0.2)
    finally:
        mirror.stop()
    # The program ends: a real SavedModel, a backup; the keeper's final upload.
    digits(pod[m.OUTPUT_DIR] / "digits")
    (pod[m.BACKUP_DIR] / "ckpt-1.index").write_bytes(b"ckpt")
    shipper.tick(False)
    assert shipper.done, out.getvalue()
    kube.set_pod(NS, w0, chief_status("terminated"))
    kube.set_pod(NS, w1, {"phase": "Succeeded", "containerStatuses": [
        {"name": "tensorflow", "restartCount": 0, "state": chief_status("x")["containerStatuses"][1]["state"]}]})
    record = backend.wait(job, timeout=60)
    assert record.status == "succeeded", record.error
    # fetched at the job's end, in the layout a local job has
    assert (Path(record.output_dir) / "digits" / "saved_model.pb").exists()
    assert not (Path(record.output_dir) / ".cellship").exists()
    assert (Path(record.job_dir) / "backup" / "ckpt-1.index").read_bytes() == b"ckpt"
    assert local_events.read_bytes() == b"first scalar, second"
    again = backend.fetch(record, stream=io.StringIO())
    assert again.files == 0 and again.unchanged >= 3
    exported = export_job(record.id, "digits-s3")
    assert exported.model.name == "digits-s3" and exported.saved_model.name == "digits"
    # `cellship deploy s3://...`'s own check reads the same SavedModel from the bucket.
    from cellship.deployment.source import check_s3_model

    check_s3_model(kube, NS, "s3://prod/team/digits-run/digits", SECRET)
    with pytest.raises(Exception, match="holds no SavedModel"):
        check_s3_model(kube, NS, "s3://prod/team/digits-run/.cellship/backup", SECRET)


def test_check_access_and_listing_against_the_real_server(s3) -> None:
    bucket = s3.bucket("checks")
    url = parse(f"s3://{bucket}/a")
    store.check_access(s3.client(), url, creds(s3))
    with pytest.raises(StorageError, match="does not know the access key|refused the keys"):
        from cellship.inside.objects import new_client

        store.check_access(new_client("nobody", "x", s3.endpoint, "us-east-1"), url, creds(s3))
    assert sync.listing(s3.client(), url) == []
    assert storage.uses_storage(KubernetesOptions(output_dir=str(url), storage_secret="x"))


def test_the_keeper_process_from_the_shim_uploads_then_ends(s3, tmp_path: Path) -> None:
    """The keeper as the chief pod runs it: ``python3 keeper.py`` from the shim package
    the ConfigMap carries, the plan and the Secret's keys in its environment."""
    import json
    import subprocess
    import sys

    bucket = s3.bucket("keeper")
    shim = tmp_path / "shim"
    for rel, text in m.shim_files().items():
        (shim / rel).parent.mkdir(parents=True, exist_ok=True)
        (shim / rel).write_text(text)
    job_dir = tmp_path / "job"
    (job_dir / ".cellship").mkdir(parents=True)
    (job_dir / ".cellship" / "started").touch()  # the program started, and has ended
    (job_dir / "output" / "digits").mkdir(parents=True)
    (job_dir / "output" / "digits" / "saved_model.pb").write_bytes(b"pb")
    options = KubernetesOptions(output_dir=f"s3://{bucket}/run", storage_secret=SECRET)
    plan = storage.upload_plan(options, "job1")
    for root in plan["roots"]:
        root["local"] = root["local"].replace(m.JOB_DIR, str(job_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= s3.env() | {"CELLSHIP_JOB_DIR": str(job_dir), "CELLSHIP_LINGER": "600",
                       "CELLSHIP_UPLOADS": json.dumps(plan), "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-u", str(shim / "cellship/inside/keeper.py")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every file of the job is in object storage" in done.stdout
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert {"run/digits/saved_model.pb", "run/.cellship/jobs/job1.json"} <= keys, keys
