"""A cluster job's files come home through the API server alone (exec into the chief
pod's keeper container): large files, broken streams, a full disk, cancel, a lost pod,
and TensorBoard live on a running job."""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

import cellship
from cellship.cli.main import main as cli
from cellship.fetch.pull import FetchError
from cellship.kube import client as kube_client
from cellship.kube.errors import KubernetesUnreachable
from cellship.train.kubernetes.backend import KubernetesBackend
from tests.k8s.support import options, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]

BLOB_MB = 64
WRITES_BLOB = f'''
import hashlib, os
import cellship
digest = hashlib.sha256()
with open(cellship.job.output_dir() / "blob.bin", "wb") as handle:
    for _ in range({BLOB_MB}):
        block = os.urandom(1 << 20)
        digest.update(block)
        handle.write(block)
print("blob-sha256", digest.hexdigest(), flush=True)
'''


def blob_digest(job) -> str:
    line = next(l.text for l in job.logs() if l.text.startswith("blob-sha256"))
    return line.split()[1]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_a_full_disk_then_a_broken_stream_then_cellship_fetch(cluster, namespace, capsys,
                                                               monkeypatch) -> None:
    job = cellship.submit(WRITES_BLOB, workers=1, name="blob", backend="kubernetes",
                          kubernetes=options(cluster, namespace, fetch_linger=300))
    staging = Path(job.record.job_dir) / ".fetch"
    staging.mkdir()
    # A disk too small for the file: a real tmpfs of 16 MiB under the job's staging dir.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(staging)], check=True)
    try:
        record = job.wait(timeout=180)
        assert record.status == "succeeded", record.error
        said = capsys.readouterr().err
        assert "disk is full" in said and f"cellship fetch {job.id}" in said, said
        assert not (job.output_dir / "blob.bin").exists()  # no half file looking complete
        assert not list(staging.glob("part-*"))
    finally:
        subprocess.run(["umount", str(staging)], check=True)
    # Room again; the first stream breaks a third of the way: resumed, not started over.
    client = kube_client.connect(cluster.context)
    real_exec = client.exec
    broke: list[int] = []

    def breaking(namespace, name, command, container="tensorflow", timeout=60.0):
        sent = 0
        for chunk in real_exec(namespace, name, command, container, timeout):
            sent += len(chunk)
            if "send" in command and not broke and sent > (BLOB_MB << 20) // 3:
                broke.append(sent)
                raise KubernetesUnreachable("the exec stream broke (injected)", None)
            yield chunk

    monkeypatch.setattr(client, "exec", breaking)
    assert cli(["fetch", job.id]) == 0
    assert broke, "the stream was never broken"
    assert sha256(job.output_dir / "blob.bin") == blob_digest(job)
    fetched = json.loads((Path(job.record.job_dir) / "fetch.json").read_text())
    assert fetched["complete"] and fetched["bytes"] == BLOB_MB << 20, fetched  # none twice
    assert "fetched" in capsys.readouterr().err
    job.delete()


# Both programs end on SIGTERM (a deleted pod's signal) rather than sitting out the
# 30 s grace period: what is tested here is the copy, not the grace.
SLEEPS_AFTER_WRITING = '''
import signal, sys, time
import cellship
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
(cellship.job.output_dir() / "so-far.txt").write_text("half way\\n")
print("written", flush=True)
time.sleep(600)
'''


def test_cancel_copies_the_outputs_so_far_then_deletes_and_now_does_not(cluster,
                                                                         namespace) -> None:
    jobs = [cellship.submit(SLEEPS_AFTER_WRITING, workers=1, name=f"cancel-{i}",
                            backend="kubernetes", kubernetes=options(cluster, namespace))
            for i in range(2)]
    for job in jobs:
        wait_for(lambda job=job: any("written" in l.text for l in job.logs()), 120, "the file")
    kept, now = jobs
    assert kept.cancel().status == "cancelled"
    assert (kept.output_dir / "so-far.txt").read_text() == "half way\n"
    record = now.cancel(now=True)  # the Python API's Job.cancel(now=True)
    assert record.status == "cancelled" and not (now.output_dir / "so-far.txt").exists()
    for job in jobs:
        left = cluster.kubectl("get", "pods,services,configmaps", "-n", namespace, "-l",
                               f"cellship.io/job-id={job.id}", "-o", "name").stdout
        assert left.strip() == "", left


def test_a_pod_lost_before_the_copy_is_said_plainly(cluster, namespace) -> None:
    job = cellship.submit("print('done')\n", workers=1, name="lost", backend="kubernetes",
                          detached=True, kubernetes=options(cluster, namespace))
    wait_for(lambda: job.status == "succeeded", 120, "the job to succeed")  # no wait(): no fetch
    pod = f"lost-{job.id}-worker-0"
    cluster.kubectl("delete", "pod", pod, "-n", namespace, "--grace-period=0", "--force")
    with pytest.raises(FetchError) as caught:
        KubernetesBackend().fetch(job.record)
    assert f"the chief pod {pod} is gone" in str(caught.value), caught.value
    assert cli(["fetch", job.id]) == 1


WRITES_SCALARS = '''
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
from cellship.inside.eventfile import frame_record
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
folder = os.path.join(os.environ["CELLSHIP_LOGDIR"], "train")
os.makedirs(folder, exist_ok=True)
path = os.path.join(folder, "events.out.tfevents.%d.chief" % time.time())
with open(path, "ab") as handle:
    handle.write(frame_record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()))
    for step in range(STEPS):
        value = Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
        event = Event(wall_time=time.time(), step=step, summary=Summary(value=[value]))
        handle.write(frame_record(event.SerializeToString()))
        handle.flush()
        print("scalar", step, flush=True)
        time.sleep(PAUSE)
'''


def scalars(url: str, run: str) -> list:
    query = f"{url}/data/plugin/scalars/scalars?run={urllib.request.quote(run)}&tag=loss"
    try:
        with urllib.request.urlopen(query, timeout=5) as answer:
            return json.loads(answer.read())
    except OSError:
        return []


def test_tensorboard_shows_a_running_cluster_jobs_scalars(cluster, namespace) -> None:
    from cellship.watch import tensorboard as tb

    job = cellship.submit(WRITES_SCALARS.replace("STEPS", "300").replace("PAUSE", "0.5"),
                          workers=1, name="live-board", backend="kubernetes",
                          kubernetes=options(cluster, namespace))
    wait_for(lambda: any("scalar 1" in l.text for l in job.logs()), 120, "the first scalars")
    mirror = KubernetesBackend().mirror(job.record)
    assert mirror is not None
    server = tb.open_tensorboard([job.id])
    try:
        run = f"{job.name}/train"
        points = wait_for(lambda: [p for p in scalars(server.url, run) if p[1] >= 3], 60,
                          "the pod's scalars in the local TensorBoard")
        assert job.status == "running"  # live: while the job runs, not after
        assert points[0][2] == pytest.approx(1.0 / (points[0][1] + 1))
    finally:
        tb.stop(server)
        mirror.stop()
        KubernetesBackend().cancel(job.record, now=True)
