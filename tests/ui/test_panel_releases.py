"""The panel's Releases tab in a real JupyterLab in Debian chromium: the Release… dialog
starts a real `cellship release` of a notebook of the Jupyter root (on the server, as a
detached process), whose gate fails; its record shows up in the tab, failed at step gates.
Every string of a record (notebook path, who, parameters, gates, reason, image) renders as
text (the payloads of test_hostile_strings.py).

Screenshots land in test-artifacts/ui/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cellship.store import ReleaseRecord, Store
from tests.integration.test_batch import make_notebook
from tests.ui.lab import Lab, open_panel
from tests.ui.test_hostile_strings import PAYLOADS, _assert_inert

pytestmark = [pytest.mark.ui, pytest.mark.kernel]


def test_the_release_dialog_starts_a_release_whose_record_shows(lab: Lab, lab_home: Path, page,
                                                                shot) -> None:
    make_notebook(lab.root / "gated.ipynb", 'import cellship\ncellship.record("accuracy", 0.1)',
                  parameters="")
    open_panel(page)
    page.locator('.cs-tab[data-tab="releases"]').click()
    page.locator(".cs-releases[data-state='ready']").wait_for(timeout=30_000)
    page.locator(".cs-release-button").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".cs-release-notebook-input").fill("gated.ipynb")
    dialog.locator(".cs-release-model-input").fill("ui-gated")
    dialog.locator(".cs-release-gates-input").fill("record:accuracy > 0.9\n")
    shot(page, "release-dialog")
    dialog.locator("button", has_text="Release").click()
    row = page.locator('.cs-release-row[data-model="ui-gated"][data-outcome="failed"]')
    row.wait_for(timeout=120_000)
    assert "at gates" in row.locator(".cs-release-step").inner_text()
    assert row.locator(".cs-release-notebook-path").inner_text() == "gated.ipynb"
    assert "record:accuracy > 0.9 [0.1 FAIL]" in row.locator(".cs-release-gates").inner_text()
    shot(page, "release-failed")


def test_payloads_in_release_records_render_as_text(lab: Lab, lab_home: Path, page, shot) -> None:
    store = Store(lab_home / "cellship.db")
    for i, payload in enumerate(PAYLOADS):
        store.begin_release(ReleaseRecord(
            id=f"feed{i:04d}", kind="release", model=f"hostile{i}", target="local",
            outcome="failed", user=payload, started=time.time(), notebook=f"/x/{payload}.ipynb",
            parameters={"lr": payload, payload: 1}, gates=({"gate": payload, "value": None},),
            failed_step="gates", reason=payload, details={"image": payload}), lambda _pid: False)
    open_panel(page)
    page.locator('.cs-tab[data-tab="releases"]').click()
    for i, payload in enumerate(PAYLOADS):
        row = page.locator(f'.cs-release-row[data-id="feed{i:04d}"]')
        row.wait_for(timeout=30_000)
        assert row.locator(".cs-release-notebook-path").inner_text() == f"/x/{payload}.ipynb"
        assert payload in row.locator(".cs-release-when").inner_text()
        assert row.locator(".cs-release-gates").inner_text() == f"{payload} [-]"
        assert payload in row.locator(".cs-release-parameters").inner_text()
        assert payload in row.locator(".cs-release-where").inner_text()
    _assert_inert(page)
    shot(page, "hostile-releases")
