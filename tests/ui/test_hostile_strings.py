"""Every user-supplied string renders as text in the panel: a list of markup and script
payloads put in job names, errors, log lines, metric tags, batch names and parameters,
model names and sources, running servers (models, URL), deployments (name, namespace,
image, URL) and cluster-only jobs (name, status, pods, nodes, the cluster's reason), shown
in a real JupyterLab in Debian chromium.

What must hold, for every payload and every place: the panel shows the payload's exact
characters, no element the payloads carry (img, script, svg, iframe, a, b, i, style) exists
inside the panel, and no payload's script ran (``window.__pwned`` stays unset).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest

from tests.server.records import fake_job
from tests.ui.lab import Lab, open_panel

pytestmark = pytest.mark.ui

PAYLOADS = [
    "<img src=x onerror=window.__pwned=1>",
    "<script>window.__pwned=2</script>",
    '"><svg onload=window.__pwned=3>',
    "'><iframe src=javascript:window.__pwned=4>",
    "<a href=javascript:window.__pwned=5>click</a>",
    "<style>*{display:none}</style><b>bold</b><i>it</i>",
    "${window.__pwned=6}{{constructor.constructor('window.__pwned=7')()}}",
    "&lt;not-an-entity&gt; &amp; \u202eevil\u202c",
]
TAGS = ", ".join(f"#cellship-panel {tag}" for tag in (
    "img", "script", "svg[onload]", "iframe", "a[href^='javascript']", "b", "i", "style"))


def _visible(text: str) -> str:
    """What the page shows of a payload: every character."""
    return text


def _assert_inert(page) -> None:
    assert page.locator(TAGS).count() == 0, page.locator(TAGS).first.evaluate("e => e.outerHTML")
    assert page.evaluate("() => window.__pwned") is None


def test_payloads_in_jobs_logs_and_metric_tags_render_as_text(lab: Lab, lab_home: Path, page, shot) -> None:
    pytest.importorskip("tensorboard")
    from cellship.store import Store
    from tests.unit.inside.test_eventfile import append, event_file, scalar_event, version_event

    store = Store(lab_home / "cellship.db")
    jobs = []
    for i, payload in enumerate(PAYLOADS):
        job = fake_job(store, lab_home, name=f"{payload}#{i}", status="failed", error=payload,
                       logs={"worker-0": f"log {i}: {payload}\n"})
        append(event_file(Path(job.logdir) / "train"), version_event(),
               *(scalar_event(payload, step, 1.0 / (step + 1)) for step in range(3)))
        jobs.append(job)
    open_panel(page)
    for i, payload in enumerate(PAYLOADS):
        name = _visible(f"{payload}#{i}")
        row = page.locator(".cs-job-row", has=page.locator(".cs-job-name", has_text=name))
        row.first.wait_for(timeout=30_000)
        assert row.first.locator(".cs-job-name").inner_text() == name
    _assert_inert(page)
    shot(page, "hostile-list")
    for i, payload in enumerate(PAYLOADS):
        open_panel(page)
        name = _visible(f"{payload}#{i}")
        page.locator(".cs-job-row", has=page.locator(".cs-job-name", has_text=name)).first.click()
        page.wait_for_selector(".cs-log-line", timeout=30_000)
        page.wait_for_selector(".cs-metric", timeout=30_000)
        detail = page.locator("#cellship-panel").inner_text()
        assert _visible(f"log {i}: {payload}") in page.locator(".cs-logs").inner_text()
        assert _visible(payload) in page.locator(".cs-metrics").inner_text()
        assert _visible(payload) in detail  # the error line too
        _assert_inert(page)
        page.locator(".cs-back").first.click() if page.locator(".cs-back").count() else None
    shot(page, "hostile-detail")


def test_payloads_in_batches_and_models_render_as_text(lab: Lab, lab_home: Path, page, shot) -> None:
    from cellship.store import BatchRecord, RunRecord, Store

    store = Store(lab_home / "cellship.db")
    for i, payload in enumerate(PAYLOADS):
        batch_id = secrets.token_hex(4)
        out = lab_home / "batches" / batch_id
        out.mkdir(parents=True)
        run = RunRecord(batch_id=batch_id, index=0, parameters={"lr": payload, payload: 1},
                        status="pending", attempt=0, output_path=str(out / "0.ipynb"),
                        log_path=str(out / "0.log"), started=None, ended=None, error=None,
                        pid=None, recorded={})
        store.create_batch(BatchRecord(id=batch_id, name=f"{payload}#{i}", notebook=f"/x/{payload}.ipynb",
                                       status="pending", backend="local", parallel=1, kernel=None,
                                       output_dir=str(out), cwd=str(lab_home), created=time.time(),
                                       runs=(run,)))
        model = lab_home / "models" / f"m{i}" / "1"
        model.mkdir(parents=True, exist_ok=True)
        (model / "saved_model.pb").write_bytes(b"")
        (model / "cellship-manifest.json").write_text(json.dumps({
            "name": f"m{i}", "version": 1, "created": "2026-11-25T10:00:00+00:00",
            "source": {"kind": "notebook", "path": f"/x/{payload}"}}))
    open_panel(page)
    page.locator('.cs-tab[data-tab="batches"]').click()
    for i, payload in enumerate(PAYLOADS):
        page.locator(".cs-batch-row", has_text=_visible(f"{payload}#{i}")).first.wait_for(timeout=30_000)
    _assert_inert(page)
    page.locator(".cs-batch-row", has_text=_visible(f"{PAYLOADS[0]}#0")).first.click()
    # the detail's title is the name; its run table shows the parameters, as text
    page.locator(".cs-batch-detail .cs-runs", has_text="window.__pwned=1").first.wait_for(timeout=30_000)
    assert _visible(PAYLOADS[0]) in page.locator(".cs-batch-detail").inner_text()
    _assert_inert(page)
    shot(page, "hostile-batch")
    open_panel(page)
    page.locator('.cs-tab[data-tab="models"]').click()
    for i, payload in enumerate(PAYLOADS):
        row = page.locator(f'.cs-model-row[data-model="m{i}/1"]')
        row.wait_for(timeout=30_000)
        assert _visible(payload).rsplit("/", 1)[-1] in row.inner_text()  # the source's file name
    _assert_inert(page)
    shot(page, "hostile-models")


def test_payloads_in_servers_deployments_and_cluster_jobs_render_as_text(
        lab: Lab, lab_home: Path, page, shot, stand_in) -> None:
    from cellship.serve import registry
    from cellship.watch.tensorboard.registry import registry as locked

    # A live process that passes for `cellship serve` (the registry lists only those),
    # serving models named by the payloads; the Servers view reads the real registry.
    with locked(registry.root()) as entries:
        entries.append({"pid": stand_in.pid, "host": "127.0.0.1", "port": 18501, "grpc_port": None,
                        "url": f"http://127.0.0.1:18501/{PAYLOADS[1]}", "models": PAYLOADS,
                        "repository": {p: f"/models/{p}" for p in PAYLOADS},
                        "started": time.time()})
    # Deployments and cluster jobs come from a cluster: their payloads are the REST's answer.
    deployments = [{"name": f"{p}#{i}", "namespace": p, "kind": "Deployment", "image": p,
                    "model_name": p, "port": 8501, "desired": 1, "ready": 0,
                    "created": "2026-12-01T10:00:00Z", "user": p, "url": f"http://{p}"}
                   for i, p in enumerate(PAYLOADS)]
    cluster_jobs = [{"id": f"c{i}", "name": f"{p}#{i}", "namespace": p, "status": p,
                     "pods": {p: p}, "nodes": {p: p}, "created": None, "user": p,
                     "origin": "cluster", "backend": "kubernetes"} for i, p in enumerate(PAYLOADS)]
    page.route("**/cellship/api/deployments*", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=json.dumps({"deployments": deployments, "count": len(deployments), "reason": None})))
    page.route("**/cellship/api/jobs?*cluster=1*", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=json.dumps({"jobs": [], "count": 0, "total": 0, "cluster_jobs": cluster_jobs,
                         "cluster_reason": PAYLOADS[0]})))
    open_panel(page)
    for i, payload in enumerate(PAYLOADS):
        row = page.locator(f'.cs-cluster-job-row[data-job-id="c{i}"]')
        row.wait_for(timeout=30_000)
        assert row.locator(".cs-job-name").inner_text() == _visible(f"{payload}#{i}")
        assert row.locator(".cs-pod").inner_text() == _visible(f"{payload}: {payload} on {payload}")
    assert page.locator(".cs-cluster-reason").inner_text() == _visible(PAYLOADS[0])
    _assert_inert(page)
    shot(page, "hostile-cluster-jobs")
    page.locator('.cs-tab[data-tab="servers"]').click()
    server = page.locator(f'.cs-server-row[data-pid="{stand_in.pid}"]')
    server.wait_for(timeout=30_000)
    assert server.locator(".cs-server-models").inner_text() == _visible(", ".join(PAYLOADS))
    assert _visible(PAYLOADS[1]) in server.locator(".cs-url").inner_text()
    server.locator(".cs-stop").click()  # the dialog's body names the models, as text
    assert _visible(PAYLOADS[0]) in page.locator(".jp-Dialog-body").inner_text()
    assert page.locator(".jp-Dialog img, .jp-Dialog script, .jp-Dialog b").count() == 0
    page.locator(".jp-Dialog button", has_text="Keep serving").click()
    _assert_inert(page)
    shot(page, "hostile-servers")
    page.locator('.cs-tab[data-tab="deployments"]').click()
    for i, payload in enumerate(PAYLOADS):
        row = page.locator(".cs-deployment-row", has=page.locator(
            ".cs-deployment-name", has_text=_visible(f"{payload}#{i}")))
        row.first.wait_for(timeout=30_000)
        assert row.first.locator(".cs-image").inner_text() == _visible(payload)
    page.locator(".cs-undeploy").first.click()
    assert _visible(PAYLOADS[0]) in page.locator(".jp-Dialog-body").inner_text()
    page.locator(".jp-Dialog button", has_text="Keep it").click()
    _assert_inert(page)
    shot(page, "hostile-deployments")
    page.unroute("**/cellship/api/deployments*")
    page.unroute("**/cellship/api/jobs?*cluster=1*")
