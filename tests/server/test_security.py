"""Security of the REST API, tested against a real ``jupyter lab`` process on 127.0.0.1.

- every mutating endpoint (each POST and DELETE of openapi.yaml) refuses a request with
  no token (403), and one carrying the login cookie but not Jupyter's XSRF token (403);
  with the XSRF token it gets past authentication;
- the token never appears in a URL the API hands out, a log line of the server, or a file
  cellship writes (job directories, the store, batch outputs), even when the server and
  its kernels carry it in ``JUPYTER_TOKEN``;
- file access refuses ``..``, absolute paths, encoded traversal and symlinks that leave
  the job directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from cellship.jupyter import OPENAPI
from cellship.store import Store
from tests.server.records import fake_job
from tests.ui.lab import Lab, running_lab

ENV_SECRET = "envsecret" + "7" * 24  # what JUPYTER_TOKEN holds in the server's environment


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_TOKEN", ENV_SECRET)  # inherited by the server and its kernels
        with running_lab(tmp_path_factory.mktemp("secure-root")) as server:
            yield server


def _mutating_operations() -> list[tuple[str, str]]:
    spec = yaml.safe_load(Path(OPENAPI).read_text())
    return [(method.upper(), path) for path, item in spec["paths"].items()
            for method in item if method in ("post", "delete", "put", "patch")]


def _url(lab: Lab, path: str) -> str:
    filled = (path.replace("{job_id}", "00000000").replace("{batch_id}", "00000000")
              .replace("{pid}", "999999999").replace("{name}", "nosuchdeployment"))
    return f"{lab.url}cellship/api{filled}"


def _cookie_session(lab: Lab) -> requests.Session:
    """A browser's session: logged in by the token once, then cookies only."""
    session = requests.Session()
    session.get(f"{lab.url}lab?token={lab.token}", timeout=30).raise_for_status()
    assert "_xsrf" in session.cookies, session.cookies
    return session


@pytest.mark.parametrize("method, path", _mutating_operations())
def test_mutating_endpoints_refuse_without_token_or_xsrf(lab: Lab, method: str, path: str) -> None:
    url = _url(lab, path)
    body = json.dumps({"notebook": "nb.ipynb"}) if path == "/batches" else ""
    bare = requests.request(method, url, data=body, timeout=30)
    assert bare.status_code == 403 and bare.json()["code"] == 403, bare.text

    session = _cookie_session(lab)
    no_xsrf = session.request(method, url, data=body, timeout=30)
    assert no_xsrf.status_code == 403 and set(no_xsrf.json()) == {"code", "message"}, no_xsrf.text

    with_xsrf = session.request(method, url, data=body, timeout=30,
                                headers={"X-XSRFToken": session.cookies["_xsrf"]})
    assert with_xsrf.status_code != 403, with_xsrf.text  # past authentication: 404/400/409


def test_the_token_appears_in_no_url_log_line_or_file(lab: Lab) -> None:
    store = Store(lab.home / "cellship.db")
    job = fake_job(store, lab.home, name="secure", logs={"worker-0": "hello\n"})
    notebook = lab.root / "tiny.ipynb"
    notebook.write_text(json.dumps({
        "cells": [{"cell_type": "code", "metadata": {}, "source": "print('hi')",
                   "outputs": [], "execution_count": None}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    auth = {"Authorization": f"token {lab.token}"}
    api = f"{lab.url}cellship/api"
    bodies, batch_id = [], None
    for method, path, kwargs in [
        ("GET", "/jobs", {}), ("GET", f"/jobs/{job.id}", {}),
        ("GET", f"/jobs/{job.id}/logs", {"params": {"format": "json"}}),
        ("GET", f"/jobs/{job.id}/files", {"params": {"path": "logs"}}),
        ("POST", f"/jobs/{job.id}/tensorboard", {}),
        ("POST", "/batches", {"data": json.dumps({"notebook": "tiny.ipynb", "name": "secure"})}),
        ("GET", "/models", {}), ("GET", "/servers", {}), ("GET", "/deployments", {}),
        ("GET", "/nope", {}),
    ]:
        reply = requests.request(method, api + path, headers=auth, timeout=120, **kwargs)
        assert reply.status_code < 500, (path, reply.text)
        bodies.append(reply.text + json.dumps(dict(reply.headers)))
        if path == "/batches":
            assert reply.status_code == 201, reply.text
            batch_id = reply.json()["id"]
    # the token in a query string (how links with ?token= arrive) and a bad one in a header
    requests.get(f"{api}/jobs/nope?token={lab.token}", timeout=30)
    requests.get(f"{api}/jobs", headers={"Authorization": f"token {ENV_SECRET}x"}, timeout=30)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        detail = requests.get(f"{api}/batches/{batch_id}", headers=auth, timeout=30).json()
        if detail["status"] not in ("pending", "running"):
            break
        time.sleep(0.5)
    assert detail["status"] == "succeeded", detail
    bodies.append(json.dumps(detail))

    secrets = [lab.token, ENV_SECRET]
    for text in bodies:
        for secret in secrets:
            assert secret not in text, f"a reply carries the token: {text[:300]}"
    leaks = []
    for path in [lab.log, *lab.root.rglob("*")]:
        if path.is_file() and ".lab/runtime" not in str(path):  # (Jupyter's own 0600 files)
            data = path.read_bytes()
            leaks += [str(path) for secret in secrets if secret.encode() in data]
    assert not leaks, f"the token was written to {leaks}"


@pytest.mark.parametrize("bad", ["..", "../..", "../../cellship.db", "/etc/passwd", "//etc/passwd",
                                 "output/../../..", "output/../../../etc", "escape", "escape/passwd",
                                 "inner/../escape/hostname", "loop", "logs/../../", "\\..\\..",
                                 "C:/Windows", "out\0put", "%2e%2e/%2e%2e", "link-to-file"])
def test_file_access_stays_inside_the_job_directory(lab: Lab, bad: str) -> None:
    store = Store(lab.home / "cellship.db")
    job = fake_job(store, lab.home, name="files")
    job_dir = Path(job.job_dir)
    (job_dir / "escape").symlink_to("/etc")
    (job_dir / "inner").mkdir()
    (job_dir / "loop").symlink_to(job_dir / "loop")
    (job_dir / "link-to-file").symlink_to(lab.home / "cellship.db")
    reply = requests.get(f"{lab.url}cellship/api/jobs/{job.id}/files", params={"path": bad},
                         headers={"Authorization": f"token {lab.token}"}, timeout=30)
    assert reply.status_code in (400, 404), (bad, reply.status_code, reply.text[:200])
    assert set(reply.json()) == {"code", "message"}
    if bad not in ("%2e%2e/%2e%2e", "out\0put", "loop"):  # (names that are simply not there)
        assert reply.status_code == 400 and "Refused" in reply.json()["message"], (bad, reply.text)
