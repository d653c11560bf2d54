"""Browser tests: one JupyterLab for the whole tier (starting it costs ~3 s, loading the
page ~5 s), one chromium, a fresh page per test; screenshots under test-artifacts/ui/.

Package-scoped, not session-scoped: Playwright's sync API keeps an event loop marked
running in the main thread until it stops, which would break asyncio in later tiers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO
from tests.ui.lab import Lab, browser, missing_prerequisites, running_lab

ARTIFACTS = REPO / "test-artifacts" / "ui"


@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    with running_lab(tmp_path_factory.mktemp("lab-root")) as server:
        yield server


@pytest.fixture(scope="package")
def chromium(lab: Lab) -> Iterator[object]:
    with browser() as chromium:
        yield chromium


@pytest.fixture
def lab_home(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Jobs this test submits or records land in the store the lab's panel shows."""
    monkeypatch.setenv("CELLSHIP_HOME", str(lab.home))
    return lab.home


@pytest.fixture
def cellship_requests() -> list[tuple[str, dict[str, str]]]:
    """(URL, headers) of every request the page sent to cellship's REST API."""
    return []


@pytest.fixture
def page(lab: Lab, chromium: object, request: pytest.FixtureRequest,
         cellship_requests: list[tuple[str, dict[str, str]]]) -> Iterator[object]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("request", lambda req: "/cellship/" in req.url
            and cellship_requests.append((req.url, dict(req.headers))))
    page.goto(lab.page_url("lab"))
    page.wait_for_selector(".jp-LabShell", timeout=60_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"))
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    # Every test: the panel (and the notebook's job view) authenticate by header; a token
    # in a URL ends up in proxy and server logs and in the browser's history.
    leaked = [url for url, _ in cellship_requests if lab.token in url]
    assert not leaked, f"the token rode in a request URL: {leaked[:3]}"


@pytest.fixture
def shot(request: pytest.FixtureRequest):
    """``shot(page, "name")`` keeps a screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page: object, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path))
        return path

    return take

