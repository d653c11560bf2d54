"""The panel sees the cluster: a real JupyterLab (its KUBECONFIG the test cluster's, its
namespace the test's) in Debian chromium, against the real cluster of this tier.

- A served model deployed with ``cellship deploy``'s code (the model on a hostPath, as in
  test_deploy.py) shows in the Deployments view with ready/desired, image and URL; its
  Undeploy button asks first, then the Deployment and its Service are gone.
- A job submitted from "another machine" (another process with its own CELLSHIP_HOME and
  user: the cluster has it, this machine's store does not) shows in the jobs view marked
  ``cluster``, with each replica's pod phase and the node it runs on; a job of this
  machine's store on the cluster is a plain row whose detail names each pod and node.

Screenshots of both views land in test-artifacts/ui/ (the issue asks for them).

The browser fixtures (page, shot, the requests log) are tests/ui's own, imported; only
the lab differs: one per test, started after the cluster so it inherits KUBECONFIG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from cellship.deployment import deploy
from cellship.kube.client import connect
from cellship.kube.errors import KubernetesNotFound
from tests.conftest import REPO
from tests.k8s.support import options, wait_for
from tests.k8s.test_deploy import model_dir  # noqa: F401 - the SavedModel fixture
from tests.ui.conftest import cellship_requests, page, shot  # noqa: F401 - the browser fixtures
from tests.ui.lab import Lab, browser, missing_prerequisites, open_panel, running_lab

pytestmark = [pytest.mark.k8s, pytest.mark.ui, pytest.mark.timeout(600)]

# A submit from a process of its own: "another machine" (its own store and user), or this
# machine's lab (its store), one submit, then the process is gone.
SUBMIT = """
import json, sys
import cellship
job = cellship.submit("import time\\nprint('up', flush=True)\\ntime.sleep(900)\\n", workers=2,
                      name=sys.argv[2], backend="kubernetes", kubernetes=json.loads(sys.argv[1]))
print(job.id, flush=True)
"""


@pytest.fixture
def lab(cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """A lab whose cellship looks at the test's namespace (``$CELLSHIP_K8S_NAMESPACE``: the
    Deployments view and the cluster jobs both)."""
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("CELLSHIP_K8S_NAMESPACE", namespace)
    monkeypatch.setenv("CELLSHIP_K8S_CONTEXT", cluster.context)
    with running_lab(tmp_path / "lab-root") as server:
        yield server


@pytest.fixture
def chromium(lab: Lab) -> Iterator[object]:
    with browser() as chromium:
        yield chromium


def _submit(cluster, namespace: str, home: Path, name: str, user: str) -> str:
    env = os.environ | {"CELLSHIP_HOME": str(home), "JUPYTERHUB_USER": user}
    proc = subprocess.run([sys.executable, "-c", SUBMIT, json.dumps(options(cluster, namespace)), name],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()[-1]


def _nodes(cluster, namespace: str, job_id: str) -> dict[str, str]:
    """pod name -> node, of the job's pods that are Running on a node."""
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"cellship.io/job-id={job_id}",
                          "-o", "json").stdout
    return {p["metadata"]["name"]: p["spec"].get("nodeName") for p in json.loads(out)["items"]
            if p["status"].get("phase") == "Running" and p["spec"].get("nodeName")}


def test_panel_shows_cluster_jobs_and_deployments_and_undeploys(
        cluster, namespace: str, lab: Lab, page, shot, model_dir: Path, tmp_path: Path) -> None:  # noqa: F811 - fixtures
    client = connect(cluster.context)
    result = deploy(cluster.image, "affine", namespace=namespace, context=cluster.context,
                    model_path="/models/affine", volumes=[f"{model_dir}:/models"],
                    image_pull_policy="Never", cpu="100m", memory="256Mi", timeout=240,
                    kind="deployment", client=client)
    assert (result.ready, result.replicas) == (1, 1)
    job_id = _submit(cluster, namespace, tmp_path / "elsewhere-home", "from-elsewhere", "bob")
    here_id = _submit(cluster, namespace, lab.home, "from-here", "alice")  # in the lab's store
    nodes = {}
    for job in (job_id, here_id):
        nodes |= wait_for(lambda job=job: (found := _nodes(cluster, namespace, job)) and len(found) == 2
                          and found, 180, f"both pods of job {job} running")
    (node,) = set(nodes.values())  # one node in this cluster

    open_panel(page)
    row = page.locator(f'.cs-cluster-job-row[data-job-id="{job_id}"]')
    row.wait_for(timeout=30_000)
    assert row.locator(".cs-job-name").inner_text() == "from-elsewhere"
    assert row.locator(".cs-origin").inner_text() == "cluster"
    assert row.locator(".cs-user").inner_text() == "bob"
    assert page.locator(f'.cs-job-row[data-job-id="{job_id}"]').count() == 0  # not a store job
    page.wait_for_function(
        "([row, node]) => [...row.querySelectorAll('.cs-pod')].length === 2 && "
        "[...row.querySelectorAll('.cs-pod')].every(p => p.dataset.phase === 'Running' "
        "&& p.dataset.node === node)", arg=[row.element_handle(), node], timeout=30_000)
    pods = row.locator(".cs-pod").all_inner_texts()
    assert pods == [f"worker-0: Running on {node}", f"worker-1: Running on {node}"], pods
    assert page.locator(f'.cs-cluster-job-row[data-job-id="{here_id}"]').count() == 0
    shot(page, "cluster-jobs")
    # This machine's Kubernetes job: a row of the store's list; its detail names each
    # replica's pod and node.
    mine = page.locator(f'.cs-job-row[data-job-id="{here_id}"]')
    mine.click()  # (the list shows the job as stored; the detail asks the cluster)
    replica = page.locator('.cs-replica[data-replica="worker-1"]')
    replica.wait_for(timeout=30_000)
    page.wait_for_function("([el, node]) => el.textContent === node",
                           arg=[replica.locator(".cs-replica-node").element_handle(), node],
                           timeout=30_000)
    assert replica.locator(".cs-replica-pod").text_content().endswith("worker-1")
    page.wait_for_function("() => document.querySelector('.cs-detail-header .cs-badge')"
                           "?.dataset.status === 'running'", timeout=30_000)
    assert replica.locator(".cs-replica-node").is_visible()
    shot(page, "kubernetes-job-detail")
    page.locator(".cs-back").click()

    page.locator('.cs-tab[data-tab="deployments"]').click()
    deployment = page.locator(f'.cs-deployment-row[data-name="affine"][data-namespace="{namespace}"]')
    deployment.wait_for(timeout=30_000)
    ready = deployment.locator(".cs-ready")
    assert ready.inner_text() == "1/1"
    assert (ready.get_attribute("data-ready"), ready.get_attribute("data-desired")) == ("1", "1")
    assert deployment.locator(".cs-image").inner_text() == cluster.image
    assert deployment.locator(".cs-url").inner_text() == \
        f"http://affine.{namespace}.svc:8501/v1/models/affine"
    shot(page, "deployments")

    deployment.locator(".cs-undeploy").click()
    assert "affine" in page.locator(".jp-Dialog-body").inner_text()
    page.locator(".jp-Dialog button", has_text="Keep it").click()
    page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)
    client.get("Deployment", namespace, "affine")  # kept
    deployment.locator(".cs-undeploy").click()
    page.locator(".jp-Dialog button", has_text="Undeploy").click()
    deployment.wait_for(state="detached", timeout=60_000)

    def gone() -> bool:
        for kind in ("Deployment", "Service"):
            try:
                client.get(kind, namespace, "affine")
                return False
            except KubernetesNotFound:
                continue
        return True

    wait_for(gone, 60, "the Deployment and its Service to be deleted")
    page.wait_for_selector(".cs-deployments .cs-empty:not([hidden])", timeout=30_000)
    shot(page, "undeployed")
