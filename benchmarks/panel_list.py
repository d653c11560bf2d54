"""Goals: with 1,000 jobs in the store, GET /cellship/api/jobs answers in <= 100 ms, and the
JupyterLab panel shows the list (from clicking its sidebar tab to the 1000th row in the
DOM) in <= 1 s, in headless Debian chromium.

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


def time_endpoint(url: str, requests: int) -> tuple[list[float], int]:
    """Wall times of ``requests + 1`` GETs; the first is cold (serializes every job)."""
    samples = []
    size = 0
    for _ in range(requests + 1):
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
        samples.append((time.perf_counter() - began) * 1000)
        size = len(body)
    count = len(json.loads(body)["jobs"])
    return samples, count if size else 0


def time_uncached(home: Path) -> float:
    """The list built from nothing (no serialized rows kept), in this process: what a
    request costs when every job changed."""
    from cellship.jupyter.listing import JobListCache
    from cellship.store import Store

    store = Store(home / "cellship.db")
    began = time.perf_counter()
    JobListCache().listing(store, lambda r: r, status=None, name=None, backend=None,
                           limit=None, offset=0)
    return (time.perf_counter() - began) * 1000


def time_render(lab, count: int, renders: int) -> list[float]:
    samples = []
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
            page.wait_for_function(f"() => document.querySelectorAll('.cs-job-row').length >= {count}",
                                   timeout=30_000, polling="raf")
            samples.append((time.perf_counter() - began) * 1000)
            context.close()
    return samples


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
        uncached = time_uncached(root / "cellship-home")
        with running_lab(root) as lab:
            time.sleep(2)  # the server extension serializes finished jobs at start-up
            api, listed = time_endpoint(f"{lab.url}cellship/api/jobs?token={lab.token}", args.requests)
            render = time_render(lab, args.jobs, args.renders)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "panel_list", "machine": machine(), "jobs": args.jobs, "listed": listed,
        "store_fill_s": round(fill_s, 1),
        "uncached_list_ms_in_process": round(uncached, 1),
        "api_ms_first": round(api[0], 1),
        "api_ms_median": round(statistics.median(api[1:]), 1),
        "api_ms_p95": round(sorted(api[1:])[max(0, int(len(api[1:]) * 0.95) - 1)], 1),
        "api_ms_max": round(max(api), 1),
        "panel_render_ms_median": round(statistics.median(render), 0),
        "panel_render_ms_max": round(max(render), 0),
        "goal_api_ms": 100, "goal_render_ms": 1000,
    }
    result["meets_goal"] = (listed == args.jobs and result["api_ms_max"] <= 100
                            and result["panel_render_ms_max"] <= 1000)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
