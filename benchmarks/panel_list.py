"""Goals: with 1,000 jobs in the store, the jobs endpoint's first page
(GET /cellship/api/jobs?limit=50, what the panel asks for) answers in <= 100 ms, and the
JupyterLab panel shows its first page (from clicking its sidebar tab to the page's 50th
row in the DOM) in <= 1 s, in headless Debian chromium. The panel pages (50 jobs, then
"Show 50 more"), so the whole list is never drawn at once; the unpaged list's time is
reported beside, as information.

    .venv/bin/python benchmarks/panel_list.py [--jobs 1000] [--requests 30] [--renders 3]

Needs what the UI tests need: the labextension installed (pip install -e .), Debian's
chromium (make system-deps) and playwright (the test extra).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from _common import machine  # noqa: E402

from tests.server.records import fake_job  # noqa: E402
from tests.ui.lab import browser, missing_prerequisites, running_lab  # noqa: E402

PAGE = 50  # the panel's pageSize setting, default (extension/src/panel.ts)
STATUS_MIX = ["succeeded"] * 80 + ["failed"] * 10 + ["cancelled"] * 8 + ["running"] * 2


def fill_store(home: Path, count: int) -> None:
    import os

    home.mkdir(parents=True, exist_ok=True)
    os.environ["CELLSHIP_HOME"] = str(home)
    from cellship.store import Store

    store = Store(home / "cellship.db")
    rng = random.Random(0)
    start = time.time() - count * 60
    for i in range(count):
        fake_job(store, home, name=f"sweep-lr{rng.choice(['0.1', '0.01', '0.001'])}-{i}",
                 status=rng.choice(STATUS_MIX), workers=rng.choice([1, 2, 2, 4]),
                 created=start + i * 60, duration=rng.uniform(5, 600))


def time_endpoint(url: str, token: str, requests: int) -> tuple[list[float], int]:
    """Wall times of ``requests + 1`` GETs (the token in a header, as the panel sends it);
    the first is cold (serializes every job it lists)."""
    samples = []
    body = b""
    for _ in range(requests + 1):
        request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        samples.append((time.perf_counter() - began) * 1000)
    return samples, len(json.loads(body)["jobs"]) if body else 0


def time_uncached(limit: int | None) -> float:
    """The list (``limit`` jobs, None: all) built from nothing, no serialized rows kept, in
    this process by the endpoint's own code: what a request costs when every job changed."""
    from cellship.jupyter import jobs

    began = time.perf_counter()
    jobs._list_jobs(None, None, None, limit, 0)  # a fresh process: its cache is empty
    elapsed = (time.perf_counter() - began) * 1000
    jobs._LISTING = type(jobs._LISTING)()  # the next measure starts from nothing too
    return elapsed


def time_render(lab, first_page: int, renders: int) -> tuple[list[float], list[int], bool]:
    """Per page load: ms from the tab click to the first page's last row in the DOM, and
    the rows then shown; and whether "Show more" was offered when there are more jobs."""
    samples, shown = [], []
    more_offered = True
    with browser() as chromium:
        for _ in range(renders):
            context = chromium.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(lab.page_url("lab"))
            tab = page.locator('.jp-SideBar [data-id="cellship-panel"]')
            tab.wait_for(timeout=60_000)
            page.wait_for_timeout(500)  # let the app settle after start-up
            began = time.perf_counter()
            tab.click()
            page.wait_for_function(
                f"() => document.querySelectorAll('.cs-job-row').length >= {first_page}",
                timeout=30_000, polling="raf")
            samples.append((time.perf_counter() - began) * 1000)
            shown.append(page.evaluate("() => document.querySelectorAll('.cs-job-row').length"))
            more_offered = more_offered and page.locator(".cs-more").is_visible()
            context.close()
    return samples, shown, more_offered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--renders", type=int, default=3)
    args = parser.parse_args()
    reason = missing_prerequisites()
    if reason:
        sys.exit(f"panel_list: cannot run: {reason}")
    root = Path(tempfile.mkdtemp(prefix="cellship-bench-lab-"))
    try:
        began = time.perf_counter()
        fill_store(root / "cellship-home", args.jobs)  # the store the lab will serve
        fill_s = time.perf_counter() - began
        time_uncached(1)  # discarded: the first call pays for imports, the store, the backend
        uncached_page = time_uncached(PAGE)
        uncached_all = time_uncached(None)
        first_page = min(PAGE, args.jobs)
        with running_lab(root) as lab:
            time.sleep(2)  # the server extension serializes finished jobs at start-up
            jobs_url = f"{lab.url}cellship/api/jobs"
            api, listed = time_endpoint(f"{jobs_url}?limit={PAGE}", lab.token, args.requests)
            api_all, listed_all = time_endpoint(jobs_url, lab.token, args.requests)
            render, shown, more_offered = time_render(lab, first_page, args.renders)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "panel_list", "machine": machine(), "jobs": args.jobs, "page": PAGE,
        "listed": listed, "store_fill_s": round(fill_s, 1),
        "uncached_page_ms_in_process": round(uncached_page, 1),
        "uncached_list_ms_in_process": round(uncached_all, 1),
        "api_page_ms_first": round(api[0], 1),
        "api_page_ms_median": round(statistics.median(api[1:]), 1),
        "api_page_ms_p95": round(sorted(api[1:])[max(0, int(len(api[1:]) * 0.95) - 1)], 1),
        "api_page_ms_max": round(max(api), 1),
        "api_all_ms_median": round(statistics.median(api_all[1:]), 1),
        "api_all_ms_max": round(max(api_all), 1), "listed_all": listed_all,
        "panel_first_page_ms_median": round(statistics.median(render), 0),
        "panel_first_page_ms_max": round(max(render), 0),
        "panel_rows_shown": shown, "show_more_offered": more_offered,
        "goal_api_page_ms": 100, "goal_first_page_ms": 1000,
    }
    result["meets_goal"] = (listed == first_page and listed_all == args.jobs
                            and all(n == first_page for n in shown)
                            and more_offered == (args.jobs > PAGE)
                            and result["api_page_ms_max"] <= 100
                            and result["panel_first_page_ms_max"] <= 1000)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
