"""The panel's views of what runs beyond this machine's job store, and its push channel,
in a real JupyterLab in Debian chromium.

- Servers: a real ``cellship serve`` (a real SavedModel, answering predictions) is listed
  with its model, URL and pid; Stop asks first (JupyterLab's dialog), then the process is gone.
- Push: with the poll set to ten minutes, a job's state change in the store (written by
  this process, as a supervisor would) shows in the panel within a couple of seconds.
- Deployments and cluster jobs: what the view says when the cluster is not there (one
  sentence, never a blank view), and when the REST itself fails. Real deployments and
  real cluster jobs are tests/k8s/test_panel_cluster.py's.

Screenshots land in test-artifacts/ui/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from cellship.store import Store
from tests.conftest import REPO
from tests.server.records import fake_job
from tests.ui.lab import Lab, open_panel, put_settings

pytestmark = pytest.mark.ui

MAKE_MODEL = ("import sys; from pathlib import Path; "
              "from tests.integration.serving_models import half_plus_three; "
              "half_plus_three(Path(sys.argv[1]))")


@pytest.fixture
def slow_poll(lab: Lab, page) -> Iterator[object]:
    """The page reloaded with the panel's poll at ten minutes: whatever shows up sooner
    came through the push channel."""
    put_settings(lab, "cellship:plugin", {"refreshInterval": 600})
    try:
        page.reload()
        page.wait_for_selector(".jp-LabShell", timeout=60_000)
        yield page
    finally:
        put_settings(lab, "cellship:plugin", {})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<dir>/half_plus_three/1``: a real SavedModel, made in a child process (TensorFlow
    stays out of the browser tests' process)."""
    pytest.importorskip("tensorflow")
    version = tmp_path_factory.mktemp("served") / "half_plus_three" / "1"
    subprocess.run([sys.executable, "-c", MAKE_MODEL, str(version)], check=True, cwd=REPO,
                   capture_output=True, timeout=300,
                   env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    return version.parent


def test_servers_view_lists_a_real_server_and_stop_stops_it(lab: Lab, lab_home: Path, page, shot,
                                                            model_dir: Path) -> None:
    from cellship.serve import start_server

    with start_server(str(model_dir), args=("--drain-grace", "1")) as server:
        answer = json.loads(urllib.request.urlopen(
            f"{server.url}/v1/models/half_plus_three:predict", timeout=30,
            data=json.dumps({"instances": [1.0, 2.0]}).encode()).read())
        assert answer == {"predictions": [3.5, 4.0]}  # a real server, really serving
        open_panel(page)
        page.locator('.cs-tab[data-tab="servers"]').click()
        row = page.locator(f'.cs-server-row[data-pid="{server.pid}"]')
        row.wait_for(timeout=20_000)
        assert row.locator(".cs-server-models").inner_text() == "half_plus_three"
        assert row.locator(".cs-url").inner_text().startswith(server.url)
        assert row.locator(".cs-pid").inner_text() == str(server.pid)
        assert row.locator(".cs-started").inner_text() not in ("", "-")
        shot(page, "servers")
        # Stop asks first; "Keep serving" keeps it.
        row.locator(".cs-stop").click()
        page.locator(".jp-Dialog button", has_text="Keep serving").click()
        page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)
        assert server.running()
        row.locator(".cs-stop").click()
        assert "half_plus_three" in page.locator(".jp-Dialog-body").inner_text()
        shot(page, "stop-dialog")
        page.locator(".jp-Dialog button", has_text="Stop server").click()
        assert server.process.wait(timeout=60) == 0  # it drained and exited
        assert not psutil.pid_exists(server.pid)  # reaped: the process is gone
        row.wait_for(state="detached", timeout=20_000)
        page.wait_for_selector(".cs-servers .cs-empty:not([hidden])", timeout=10_000)
        shot(page, "stopped")


def test_push_channel_shows_a_state_change_without_the_poll(lab: Lab, lab_home: Path, slow_poll,
                                                            shot) -> None:
    page = slow_poll
    store = Store(lab_home / "cellship.db")
    open_panel(page)
    page.wait_for_selector('#cellship-panel[data-push="connected"]', timeout=20_000)
    page.wait_for_timeout(500)  # the first list has answered
    job = fake_job(store, lab_home, name="pushed-job", status="running")
    row = page.locator(f'.cs-job-row[data-job-id="{job.id}"]')
    start = time.monotonic()
    row.wait_for(timeout=5_000)  # a new job, pushed
    appeared = time.monotonic() - start
    badge = row.locator(".cs-badge")
    assert badge.get_attribute("data-status") == "running"
    start = time.monotonic()
    store.transition(job.id, "succeeded", ended=time.time())
    page.wait_for_function("el => el.dataset.status === 'succeeded'", arg=badge.element_handle(),
                           timeout=5_000)
    changed = time.monotonic() - start
    assert appeared < 2.0 and changed < 2.0, (appeared, changed)
    shot(page, "pushed")


def test_deployments_view_says_why_it_is_empty(lab: Lab, page, shot) -> None:
    # The lab's own answer depends on the machine (a kubeconfig or none): the view's two
    # cases are given by the route, the REST's real reasons are tests/server/test_cluster.py's.
    reason = "No Kubernetes cluster configured: no kubeconfig at /nowhere; set KUBECONFIG."
    page.route("**/cellship/api/deployments*", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=json.dumps({"deployments": [], "count": 0, "reason": reason})))
    open_panel(page)
    page.locator('.cs-tab[data-tab="deployments"]').click()
    page.wait_for_selector(f".cs-deployments .cs-reason:has-text('{reason}')", timeout=20_000)
    assert page.locator(".cs-deployments .cs-empty").is_hidden()
    shot(page, "deployments-no-cluster")
    page.unroute("**/cellship/api/deployments*")
    page.route("**/cellship/api/deployments*", lambda route: route.fulfill(
        status=500, content_type="application/json",
        body=json.dumps({"code": 500, "message": "the API server is on fire"})))
    page.locator(".cs-refresh").click()
    page.wait_for_selector(".cs-deployments .cs-reason:has-text('the API server is on fire.')",
                           timeout=20_000)
    assert page.locator(".cs-banner").is_hidden()  # one sentence, in the view
    page.unroute("**/cellship/api/deployments*")


def test_cluster_jobs_and_kubernetes_batches_are_marked(lab: Lab, lab_home: Path, page, shot) -> None:
    from cellship.store import BatchRecord

    cluster_answer = {"jobs": [], "count": 0, "total": 0, "cluster_reason": None, "cluster_jobs": [{
        "id": "c0ffee01", "name": "theirs", "namespace": "ml", "status": "running",
        "pods": {"worker-0": "Running", "worker-1": "Pending"},
        "nodes": {"worker-0": "gpu-node-3", "worker-1": None},
        "created": "2026-12-01T10:00:00+00:00", "user": "bob", "origin": "cluster",
        "backend": "kubernetes"}]}
    page.route("**/cellship/api/jobs?*cluster=1*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(cluster_answer)))
    store = Store(lab_home / "cellship.db")
    for backend in ("local", "kubernetes"):
        out = lab_home / "batches" / f"b-{backend}"
        out.mkdir(parents=True, exist_ok=True)
        store.create_batch(BatchRecord(id=f"b{backend[:6]}", name=f"sweep-{backend}", notebook="/x/nb.ipynb",
                                       status="succeeded", backend=backend, parallel=1, kernel=None,
                                       output_dir=str(out), cwd=str(lab_home), created=time.time(),
                                       runs=()))
    open_panel(page)
    row = page.locator('.cs-cluster-job-row[data-job-id="c0ffee01"]')
    row.wait_for(timeout=20_000)
    assert row.locator(".cs-origin").inner_text() == "cluster"
    assert row.locator(".cs-user").inner_text() == "bob"
    assert row.locator('.cs-pod[data-replica="worker-0"]').inner_text() == "worker-0: Running on gpu-node-3"
    assert row.locator('.cs-pod[data-replica="worker-1"]').inner_text() == "worker-1: Pending (not scheduled)"
    shot(page, "cluster-jobs")
    page.unroute("**/cellship/api/jobs?*cluster=1*")
    page.locator('.cs-tab[data-tab="batches"]').click()
    kube = page.locator('.cs-batch-row[data-backend="kubernetes"]', has_text="sweep-kubernetes")
    kube.wait_for(timeout=20_000)
    assert kube.locator(".cs-where .cs-origin").inner_text() == "kubernetes"
    local = page.locator('.cs-batch-row[data-backend="local"]', has_text="sweep-local")
    assert local.locator(".cs-where").inner_text() == "local"
    assert local.locator(".cs-where .cs-origin").count() == 0
    shot(page, "batches-where")
