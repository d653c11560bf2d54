"""The cellship panel in a real JupyterLab in a real browser (Debian chromium).

A `%%train` cell runs through a real kernel and its job shows up in the panel, goes
running -> succeeded, and its logs stream into the job view; another job is cancelled from
the panel and its processes are gone. Screenshots land in test-artifacts/ui/.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from cellship.kube.meta import current_user
from tests.conftest import job_processes, wait_until_gone
from tests.server.records import fake_job
from tests.ui.lab import Lab, open_panel

pytestmark = pytest.mark.ui

# The job ticks until the test releases it (a file appears) after it saw "running" in the
# panel: no race between a short job and the panel's polling, on a slow machine too.
TRAIN_CELL = """%%train --workers 1 --name ui-train
import os, time
for i in range(600):
    print(f"ui tick {{i}}", flush=True)
    if os.path.exists({release!r}):
        break
    time.sleep(0.5)
print("ui done", flush=True)"""


def _row(page, name: str):
    return page.locator(".cs-job-row", has=page.locator(".cs-job-name", has_text=re.compile(f"^{re.escape(name)}$")))


def _notebook(lab: Lab, name: str, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab.root / name)
    return name


def _open_notebook(page, lab: Lab, path: str) -> None:
    """Open a notebook and wait until its kernel is idle, answering JupyterLab's "Select
    Kernel" dialog should it ask (lab.py sets autoStartDefaultKernel, so it should not)."""
    page.goto(lab.page_url(f"lab/tree/{path}"))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        select = page.locator(".jp-Dialog button", has_text=re.compile("^Select$"))
        if select.count():
            select.click()
        elif page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() and \
                page.locator(".jp-Dialog").count() == 0:
            page.wait_for_timeout(300)
            if page.locator(".jp-Dialog").count() == 0:
                return
        page.wait_for_timeout(200)
    raise AssertionError("the notebook's kernel never became idle")


def _put_user_settings(lab: Lab, plugin: str, raw: str) -> None:
    request = urllib.request.Request(
        f"{lab.url}lab/api/settings/{plugin}", method="PUT",
        data=json.dumps({"raw": raw}).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status in (200, 204)


def _run_all(page) -> None:
    """Run > Run All Cells, then wait until the first cell has run (its prompt is [1]).
    Once more if nothing started: on a loaded machine the first kernel websocket of a
    notebook can fail (a jupyter_server race, "'NoneType' object has no attribute
    'kernel_ws_protocol'") or the kernel be not quite connected, and the request is lost."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
        try:
            page.wait_for_function(
                "() => /\\[(1|\\*)\\]/.test(document.querySelector("
                "'.jp-Notebook .jp-Cell .jp-InputPrompt')?.textContent ?? '')", timeout=20_000)
            break
        except PlaywrightTimeout:
            page.wait_for_timeout(2000)
    else:
        raise AssertionError("Run All Cells never started the notebook's first cell")
    page.wait_for_function(
        "() => /\\[1\\]/.test(document.querySelector('.jp-Notebook .jp-Cell .jp-InputPrompt')?.textContent ?? '')",
        timeout=60_000)


def test_train_cell_job_appears_runs_succeeds_and_streams_logs(lab: Lab, lab_home: Path, page, shot) -> None:
    release = lab.root / "release-ui-train"
    release.unlink(missing_ok=True)
    path = _notebook(lab, "ui-train.ipynb",
                     ["%load_ext cellship", TRAIN_CELL.format(release=str(release))])
    # The Batch button is declared in cellship's settings schema (`jupyter.lab.toolbars`), so
    # a user setting of the notebook toolbar hides it; checked here because this test opens
    # a notebook anyway (no page load of its own). The toolbar test below sees it back.
    toolbar_settings = "@jupyterlab/notebook-extension:panel"
    _put_user_settings(lab, toolbar_settings, json.dumps({"toolbar": [{"name": "cellshipBatch", "disabled": True}]}))
    try:
        _open_notebook(page, lab, path)
        page.wait_for_selector(".jp-NotebookPanel-toolbar [data-jp-item-name='save']", timeout=30_000)
        assert page.locator(".jp-NotebookPanel .cs-batch-button").count() == 0
    finally:
        _put_user_settings(lab, toolbar_settings, "{}")
    open_panel(page)
    _run_all(page)
    row = _row(page, "ui-train")
    row.wait_for(timeout=60_000)
    badge = row.locator(".cs-badge")
    page.wait_for_function("el => el.dataset.status === 'running'", arg=badge.element_handle(),
                           timeout=60_000)
    assert "1 worker" in row.locator(".cs-workers").inner_text()
    assert row.locator(".cs-user").inner_text() == current_user()  # who submitted it
    shot(page, "running")
    # The duration ticks while it runs, without a reload.
    first = row.locator(".cs-duration").inner_text()
    page.wait_for_function("([el, before]) => el.textContent !== before",
                           arg=[row.locator(".cs-duration").element_handle(), first], timeout=10_000)
    release.write_text("go")
    page.wait_for_function("el => el.dataset.status === 'succeeded'", arg=badge.element_handle(),
                           timeout=90_000)
    shot(page, "succeeded")
    row.click()
    logs = page.locator(".cs-logs")
    page.wait_for_function("el => el.dataset.ended === 'true'", arg=logs.element_handle(), timeout=30_000)
    text = logs.inner_text()
    assert "[worker 0] ui tick 0" in text and "[worker 0] ui done" in text
    assert page.locator(".cs-replica .cs-badge").first.inner_text() in ("exited", "succeeded")
    shot(page, "logs")
    # The output folder (CELLSHIP_HOME is inside the Jupyter root) opens in the file browser.
    page.locator(".cs-output").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-BreadCrumbs-item')].some(e => e.textContent === 'output')",
        timeout=15_000)
    shot(page, "output-folder")
    # And the cell itself saw the job through (the kernel followed it to the end).
    page.wait_for_selector(".jp-OutputArea-output:has-text('succeeded in')", timeout=30_000)


def test_cancel_a_job_from_the_panel_stops_its_processes(lab: Lab, lab_home: Path, page, shot,
                                                        tmp_path: Path) -> None:
    import cellship

    script = tmp_path / "sleeper.py"
    script.write_text("import time\nfor i in range(900):\n    print('tick', i, flush=True)\n"
                      "    time.sleep(0.2)\n")
    job = cellship.submit_script(script, workers=1, name="ui-cancel")
    deadline = time.monotonic() + 30
    while not job_processes(job.id) or job.record.status != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    open_panel(page)
    row = _row(page, "ui-cancel")
    row.wait_for(timeout=20_000)
    row.click()
    page.wait_for_selector(".cs-log-line", timeout=20_000)
    shot(page, "before-cancel")
    page.locator(".cs-cancel").click()
    page.locator(".jp-Dialog button", has_text="Cancel job").click()
    page.wait_for_function("() => document.querySelector('.cs-detail-header .cs-badge')?.dataset.status === 'cancelled'",
                           timeout=30_000)
    wait_until_gone(job.id, within=10)
    assert cellship.get_job(job.id).status == "cancelled"
    shot(page, "cancelled")


def test_names_and_log_text_render_as_text(lab: Lab, lab_home: Path, page, shot,
                                          cellship_requests) -> None:
    from cellship.store import Store

    evil = "<img src=x onerror=window.__pwned=1>"
    fake_job(Store(lab_home / "cellship.db"), lab_home, name=evil,
             logs={"worker-0": "<script>window.__pwned=2</script><b>not bold</b>\n"})
    open_panel(page)
    row = _row(page, evil)
    row.wait_for(timeout=20_000)
    assert row.locator(".cs-job-name").inner_text() == evil
    # A failing server shows in the banner (the poll backs off meanwhile); the refresh
    # button polls at once and the banner goes once the server answers again.
    failing = "**/cellship/api/jobs?*"
    page.route(failing, lambda route: route.fulfill(
        status=500, content_type="application/json",
        body=json.dumps({"code": 500, "message": "the store is locked"})))
    page.locator(".cs-refresh").click()
    page.wait_for_selector(".cs-banner:has-text('the store is locked')", timeout=10_000)
    page.unroute(failing)
    page.locator(".cs-refresh").click()
    page.wait_for_selector(".cs-banner", state="hidden", timeout=10_000)
    row.click()
    page.wait_for_selector(".cs-log-line", timeout=20_000)
    assert "<b>not bold</b>" in page.locator(".cs-logs").inner_text()
    # The log stream is a fetch authenticated by header (the page fixture checks that no
    # URL carries the token), not an EventSource with the token in its query.
    streams = [headers for url, headers in cellship_requests if "/logs" in url]
    assert streams and all(h.get("authorization") == f"token {lab.token}" for h in streams), streams
    assert page.locator("#cellship-panel img, #cellship-panel script, #cellship-panel b").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    shot(page, "escaped")


@pytest.mark.parametrize("answer,expected", [
    ({"status": 404, "body": "<html>404</html>", "content_type": "text/html"}, "not running"),
    ({"status": 200, "body": json.dumps({"version": "9.9.9", "api_version": 99, "capabilities": []}),
      "content_type": "application/json"}, "API version 99"),
])
def test_panel_says_when_the_server_extension_is_missing_or_another_version(
        lab: Lab, page, shot, answer: dict, expected: str) -> None:
    page.route("**/cellship/api/version*", lambda route: route.fulfill(**answer))
    page.reload()
    page.wait_for_selector(".jp-LabShell", timeout=60_000)
    page.locator('.jp-SideBar [data-id="cellship-panel"]').click()
    page.wait_for_selector('#cellship-panel[data-state="unavailable"]', timeout=30_000)
    assert expected in page.locator(".cs-banner").inner_text()
    shot(page, "unavailable")


def _jobs_shown(page) -> tuple[int, int]:
    """(rows the jobs list shows, jobs in the store) once the list has answered."""
    view = page.locator(".cs-jobs")
    return int(view.get_attribute("data-shown")), int(view.get_attribute("data-total"))


def test_dark_theme_command_palette_and_paged_jobs(lab: Lab, lab_home: Path, page, shot) -> None:
    from cellship.store import Store

    store = Store(lab_home / "cellship.db")
    for status in ("succeeded", "failed", "cancelled", "running"):
        fake_job(store, lab_home, name=f"theme-{status}", status=status)
    # More than a page (50) of older jobs: the list loads one page, then more on request.
    day_ago = time.time() - 86_400
    for i in range(60):
        fake_job(store, lab_home, name=f"page-filler-{i:03d}", created=day_ago - i)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=20_000)
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("cellship panel")
    page.locator(".lm-CommandPalette-item", has_text="Open cellship panel").click()
    page.wait_for_selector('#cellship-panel[data-state="ready"]', timeout=30_000)
    _row(page, "theme-failed").wait_for(timeout=20_000)
    shot(page, "dark")

    # Paging: the first page only, a "more" button, the count of the whole store.
    page.wait_for_selector(".cs-jobs[data-shown='50']", timeout=20_000)
    shown, total = _jobs_shown(page)
    assert total >= 64 and page.locator(".cs-job-row").count() == 50
    assert page.locator(".cs-count").inner_text() == f"50 of {total} jobs"
    more = page.locator(".cs-more")
    assert more.is_visible()
    # A filter asks the server, so it finds jobs past the loaded page (the fillers are oldest).
    page.locator(".cs-filter").fill("page-filler-00")
    page.wait_for_selector(".cs-jobs[data-shown='10']", timeout=20_000)
    assert page.locator(".cs-count").inner_text() == f"10 of {total} jobs"
    assert not more.is_visible()
    page.locator(".cs-filter").fill("")
    page.wait_for_selector(".cs-jobs[data-shown='50']", timeout=20_000)
    more.click()
    page.wait_for_selector(f".cs-jobs[data-shown='{min(total, 100)}']", timeout=20_000)
    assert _row(page, "page-filler-059").count() == (1 if total <= 100 else 0)
    assert more.is_visible() == (total > 100)
    # The manual refresh button polls at once (the list stays as it is).
    with page.expect_request(lambda req: "/cellship/api/jobs?" in req.url, timeout=5_000):
        page.locator(".cs-refresh").click()
    shot(page, "paged")

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^JupyterLab Light$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=20_000)


def test_notebook_toolbar_runs_the_notebook_as_a_batch(lab: Lab, lab_home: Path, page, shot) -> None:
    path = _notebook(lab, "ui-batch.ipynb", ["x = 1", "print('batch says', x)"])
    _open_notebook(page, lab, path)
    page.wait_for_selector(".jp-NotebookPanel .cs-batch-button", timeout=60_000)
    page.locator(".jp-NotebookPanel .cs-batch-button").click()
    page.wait_for_selector(".cs-batch-detail", timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('.cs-batch-detail .cs-detail-header .cs-badge')?.dataset.status === 'succeeded'",
        timeout=90_000)
    assert page.locator(".cs-batch-detail .cs-detail-title").inner_text() == "ui-batch"
    shot(page, "batch")
    # It is a toolbar item of the notebook toolbar's settings (`jupyter.lab.toolbars` in
    # cellship's schema), by name; test_train_cell_job... hides it through a user setting.
    toolbar = page.locator(".jp-NotebookPanel-toolbar")
    assert toolbar.locator("[data-jp-item-name='cellshipBatch'] .cs-batch-button").count() == 1


def test_models_tab_lists_exported_models(lab: Lab, lab_home: Path, page, shot) -> None:
    directory = lab_home / "models" / "ui-digits" / "1"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "saved_model.pb").write_bytes(b"")
    (directory / "cellship-manifest.json").write_text(json.dumps({
        "name": "ui-digits", "version": 1, "created": "2026-11-25T10:00:00+00:00",
        "source": {"kind": "notebook", "path": "/x/<i>train.ipynb"}}))
    open_panel(page)
    page.locator('.cs-tab[data-tab="models"]').click()
    row = page.locator('.cs-model-row[data-model="ui-digits/1"]')
    row.wait_for(timeout=20_000)
    assert "<i>train.ipynb" in row.inner_text()  # as text, not markup
    shot(page, "models")
    row.click()  # the version's directory opens in the file browser (it is inside the root)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-BreadCrumbs-item')].some(e => e.textContent === 'ui-digits')",
        timeout=15_000)


def test_job_view_draws_metric_sparklines(lab: Lab, lab_home: Path, page, shot) -> None:
    pytest.importorskip("tensorboard")
    from cellship.store import Store
    from tests.unit.inside.test_eventfile import append, event_file, scalar_event, version_event

    job = fake_job(Store(lab_home / "cellship.db"), lab_home, name="ui-metrics")
    for run, values in (("train", [1.0, 0.6, 0.4, 0.3]), ("validation", [1.1, 0.8, 0.7, 0.65])):
        append(event_file(Path(job.logdir) / run), version_event(),
               *(scalar_event("epoch_loss", step, value) for step, value in enumerate(values)))
    open_panel(page)
    _row(page, "ui-metrics").click()
    page.wait_for_selector(".cs-metric .cs-sparkline polyline", timeout=20_000)
    names = page.locator(".cs-metric-name").all_inner_texts()
    assert names == ["train/epoch_loss", "validation/epoch_loss"]
    assert page.locator(".cs-metric-last").all_inner_texts() == ["0.3000", "0.6500"]
    shot(page, "sparklines")
