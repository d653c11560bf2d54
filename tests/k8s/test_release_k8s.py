"""``cellship release --to kubernetes`` on the real cluster, one model through its life:
v1 released; v2 released with a canary (smoke test through the API server's pod proxy,
answers compared with v1's, the canary pod's /metrics watched), promoted; v3, whose model
answers differently, rolled back by itself (its canary Deployment deleted, v2 untouched);
``cellship releases digits`` shows the three with their image digests; ``cellship rollback
digits`` serves v1 again; a v4 whose CLI is killed (SIGKILL) in its canary window shows
as interrupted and ``cellship release --resume digits`` ends in v1 alone. A load loop through the model Service's ClusterIP (routed by
kube-proxy, iptables mode) runs from the moment v1 serves until the end (v2's canary and
promotion, v3's canary and rejection, the rollback, v4's killed canary and its
cleanup) and must see zero failed requests.

The serving images, offline: every version's image is built by the release itself with
cellship's own append builder (``--kind python --deps-from-base``: the cellship layer and the
model layer) onto ``registry_base`` (tests/k8s/conftest.py), which is the pods' image of
this tier (tests/cluster/image.py: a debootstrapped Debian python3 rootfs plus the
TensorFlow dependency layer pip made here from its cache, plus cellship) pushed by skopeo
into ``node_registry``, a real docker-registry on 127.0.0.1 that the node's containerd
pulls from. Nothing comes from the network: the base was made on this machine, and the
release pushes to and the kubelet pulls from that local registry by digest.

The model is trained once in this process (real TensorFlow on sklearn's digits, as in
tests/integration/test_release_local.py, whose notebook and models this test reuses).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cellship.cli.main import main
from cellship.images.registry import Registry
from cellship.kube.client import connect
from cellship.kube.errors import KubernetesNotFound
from cellship.release import kube_manifests as km
from cellship.store import Store
from tests.integration.test_batch import make_notebook
from tests.integration.test_release_local import BODY, PARAMETERS, LoadLoop, _train

pytestmark = [pytest.mark.k8s, pytest.mark.tf, pytest.mark.kernel]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float, Path, dict[str, Any]]:
    """(good model, wrong model, accuracy, example request file, example), trained once."""
    tmp = tmp_path_factory.mktemp("release-models")
    good, wrong, accuracy, example = _train(tmp)
    request = tmp / "request.json"
    request.write_text(json.dumps(example))
    return good, wrong, accuracy, request, example


def _versions(client, namespace: str) -> dict[str, tuple[int, str, int]]:
    """name -> (version, track, replicas) of the released Deployments of digits."""
    found = client.list("Deployment", namespace, f"{km.RELEASED}=digits")
    read = [km.version_of(d) for d in found]
    return {v.name: (v.version, v.track, v.replicas) for v in read if v is not None}


def _served_by_pods(client, namespace: str) -> set[int]:
    """The versions the model's running pods serve (asked through the pod proxy)."""
    from cellship.release.pods import PodHTTP

    http = PodHTTP(client, namespace)
    versions: set[int] = set()
    for pod in client.list("Pod", namespace, f"{km.RELEASED}=digits"):
        if pod["metadata"].get("deletionTimestamp") or not pod.get("status", {}).get("podIP"):
            continue
        status, raw = http.request(pod, 8501, "GET", "/v1/models/digits")
        if status == 200:
            versions |= {int(s["version"]) for s in json.loads(raw)["model_version_status"]
                         if s["state"] == "AVAILABLE"}
    return versions


@pytest.mark.timeout(1800)
def test_release_canary_promote_reject_rollback_with_zero_failed_requests(
        cluster, namespace, node_registry, registry_base, trained, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    good, wrong, accuracy, request, example = trained
    work = tmp_path / "work"
    work.mkdir()
    notebook = make_notebook(work / "release.ipynb", BODY, parameters=PARAMETERS)
    client = connect(cluster.context)
    registry = f"{node_registry.address}/releases"

    def release_flags() -> list[str]:
        return ["--to", "kubernetes", "--registry", registry, "--base", registry_base,
                "--deps-from-base", "-n", namespace, "--context", cluster.context,
                "--replicas", "2", "--canary", "50", "--timeout", "300"]

    def release(out: str, source: Path) -> int:
        return main(["release", str(notebook), "--model", "digits", "-p", "source", str(source),
                     "-p", "out", out, "-p", "accuracy", str(accuracy),
                     "--gate", "record:accuracy >= 0.5", "--example", str(request),
                     "--canary-window", "3", "--max-difference", "0.001", *release_flags()])

    # v1: nothing served before; its canary is the first pod, then it takes both replicas
    assert release("m1", good) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert out.strip() == "1", err
    assert _versions(client, namespace) == {"digits-v1": (1, km.STABLE, 2)}
    service = client.get("Service", namespace, "digits")
    assert service["spec"]["selector"] == km.pod_labels("digits")
    url = f"http://{service['spec']['clusterIP']}:8501/v1/models/digits:predict"

    with LoadLoop(url, example) as load:
        # v2: same answers, one canary pod beside v1's two, smoke passes, promoted
        assert release("m2", good) == 0, capsys.readouterr().err
        out, err = capsys.readouterr()
        assert out.strip() == "2", err
        assert "canary Deployment digits-v2: 1 pod(s)" in err and "33% of the Service" in err
        assert _versions(client, namespace) == {"digits-v2": (2, km.STABLE, 2)}
        assert _served_by_pods(client, namespace) == {2}
        during_v2 = load.ok

        # v3 answers differently: the canary's difference check rolls it back by itself
        assert release("m3", wrong) == 1
        err = capsys.readouterr().err
        assert "Rolled back: the canary's difference check failed" in err, err
        assert "version 2 is still served" in err and "Traceback" not in err
        assert _versions(client, namespace) == {"digits-v2": (2, km.STABLE, 2)}

        # the history, with the image digests the registry holds
        assert main(["releases", "digits", "--json"]) == 0
        records = json.loads(capsys.readouterr().out)
        assert [(r["version"], r["outcome"]) for r in records] == [
            (1, "promoted"), (2, "promoted"), (3, "rolled-back")]
        assert records[2]["failed_step"] == "canary"
        host, _, repo = f"{registry}/digits".partition("/")
        for r in records:
            details = r["details"]
            assert details["image"].endswith(details["digest"])
            tag = details["tag"].rsplit(":", 1)[1]
            assert Registry(host).manifest_digest(repo, tag) == details["digest"]
        assert records[0]["details"]["namespace"] == namespace
        assert main(["releases", "digits"]) == 0
        table = capsys.readouterr().out
        assert "promoted" in table and "rolled-back" in table

        # rollback: back to v1's recorded image, promoted the same way
        assert main(["rollback", "digits"]) == 0
        out, err = capsys.readouterr()
        assert out.strip() == "1", err
        assert _versions(client, namespace) == {"digits-v1": (1, km.STABLE, 2)}
        dep = client.get("Deployment", namespace, "digits-v1")
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == records[0]["details"]["image"]
        assert _served_by_pods(client, namespace) == {1}

        # killed mid-canary: `releases` shows it interrupted, `--resume` ends in one version
        killed = _kill_in_canary(notebook, good, accuracy, request, client, namespace,
                                 release_flags(), "digits-v4")
        assert main(["releases", "digits"]) == 0
        out = capsys.readouterr().out
        row = next(r for r in out.splitlines() if r.startswith(killed))
        assert row.split()[1:4] == ["4", "interrupted", "canary"], row
        assert "digits-v4" in _versions(client, namespace)  # what the dead process left
        assert main(["release", "--resume", "digits"]) == 0
        assert capsys.readouterr().out.split() == [killed, "rolled-back"]
        assert _versions(client, namespace) == {"digits-v1": (1, km.STABLE, 2)}
        assert _served_by_pods(client, namespace) == {1}

    assert load.failures == [], load.failures[:5]
    assert load.ok > during_v2 > 20, (during_v2, load.ok)
    (last,) = [r for r in Store.default().list_releases("digits") if r.kind == "rollback"]
    assert (last.previous, last.version, last.outcome) == (2, 1, "rollback")


def _kill_in_canary(notebook: Path, source: Path, accuracy: float, request: Path, client,
                    namespace: str, flags: list[str], deployment: str) -> str:
    """Start `cellship release` as its own process with a long canary window; SIGKILL it
    once its canary Deployment has a ready pod (the window is running); the release id."""
    store = Store.default()
    before = {r.id for r in store.list_releases("digits")}
    cli = Path(sys.executable).with_name("cellship")
    log = notebook.parent / "killed-release.err"
    with log.open("wb") as err:
        child = subprocess.Popen(
            [str(cli), "release", str(notebook), "--model", "digits", "-p", "source", str(source),
             "-p", "out", "m4", "-p", "accuracy", str(accuracy), "--example", str(request),
             "--canary-window", "600", *flags], stdout=subprocess.DEVNULL, stderr=err)
    try:
        end = time.monotonic() + 400
        while time.monotonic() < end and child.poll() is None:
            mine = [r for r in store.list_releases("digits") if r.id not in before]
            if mine and mine[0].failed_step == "canary" and _ready(client, namespace, deployment):
                time.sleep(2.0)  # into its window
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the release never reached its canary window: "
                                 f"{log.read_text(errors='replace')[-3000:]}")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    (record,) = [r for r in store.list_releases("digits") if r.id not in before]
    assert record.outcome == "running" and record.version == 4
    return record.id


def _ready(client, namespace: str, name: str) -> bool:
    try:
        dep = client.get("Deployment", namespace, name)
    except KubernetesNotFound:
        return False
    return int((dep.get("status") or {}).get("readyReplicas") or 0) >= 1


def test_an_unreachable_registry_fails_the_stage_and_touches_nothing(
        cluster, namespace, registry_base, trained, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A registry nobody listens on: the release fails at ``stage`` with a sentence, and
    nothing was created in the namespace."""
    good, _wrong, accuracy, request, _example = trained
    work = tmp_path / "work"
    work.mkdir()
    notebook = make_notebook(work / "release.ipynb", BODY, parameters=PARAMETERS)
    code = main(["release", str(notebook), "--model", "digits", "-p", "source", str(good),
                 "-p", "accuracy", str(accuracy), "--example", str(request),
                 "--to", "kubernetes", "--registry", "127.0.0.1:9/nobody", "--base",
                 registry_base, "--deps-from-base", "-n", namespace,
                 "--context", cluster.context])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "Building or pushing the image of version 1 failed" in err, err
    (record,) = Store.default().list_releases("digits")
    assert (record.outcome, record.failed_step) == ("failed", "stage")
    assert connect(cluster.context).list("Deployment", namespace) == []
