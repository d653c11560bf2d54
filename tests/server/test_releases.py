"""The release endpoints through a real in-process Jupyter server: a release started from
the REST API (what the panel's Release… button sends) runs detached, stops at its gate and
is listed; bad bodies are 400 sentences naming the field; nothing works without the token.
Every reply is validated against openapi.yaml by the ``call`` fixture."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from cellship.processes import pid_alive
from tests.integration.test_batch import make_notebook

GATE = "record:accuracy > 0.9"


def _notebook(root: Path, name: str = "release.ipynb") -> Path:
    return make_notebook(root / name, 'import cellship\ncellship.record("accuracy", accuracy)',
                         parameters="accuracy = 0.0")


async def _wait_for(call, model: str, within: float = 120) -> dict:
    """The model's newest record once it has ended (fails after ``within`` seconds)."""
    end = time.monotonic() + within
    records: list = []
    while time.monotonic() < end:
        records = (await call("GET", "releases", params={"model": model})).json()["releases"]
        if records and records[0]["outcome"] != "running":
            return records[0]
        await asyncio.sleep(0.5)
    raise AssertionError(f"the release of {model} did not end within {within} s: {records}")


@pytest.mark.kernel
async def test_a_release_started_over_rest_fails_its_gate_and_is_listed(
        call, jp_root_dir: Path, cellship_home: Path) -> None:
    _notebook(jp_root_dir)
    assert (await call("GET", "releases")).json() == {"releases": [], "count": 0}
    started = await call("POST", "releases", body={
        "notebook": "release.ipynb", "model": "digits", "parameters": {"accuracy": 0.1},
        "gates": [GATE]})
    assert started.code == 202, started.body
    reply = started.json()
    assert reply["model"] == "digits" and reply["pid"] > 0
    assert Path(reply["log"]).parent == cellship_home / "releases"
    assert reply["pid"] != os.getpid()  # never inside the server process
    record = await _wait_for(call, "digits")
    assert (record["outcome"], record["failed_step"]) == ("failed", "gates"), \
        (record, Path(reply["log"]).read_text())
    assert record["parameters"] == {"accuracy": 0.1}
    assert record["gates"][0]["gate"] == GATE and record["gates"][0]["passed"] is False
    assert record["notebook_path"] == "release.ipynb"
    everything = (await call("GET", "releases")).json()
    assert everything["count"] == 1 and everything["releases"][0]["id"] == record["id"]
    end = time.monotonic() + 60  # the release process ends after its record does
    while pid_alive(reply["pid"]) and time.monotonic() < end:
        await asyncio.sleep(0.2)
    assert not pid_alive(reply["pid"]), Path(reply["log"]).read_text()


async def test_a_second_release_while_one_runs_is_409(call, jp_root_dir: Path, store) -> None:
    from cellship.store import ReleaseRecord

    _notebook(jp_root_dir)
    running = ReleaseRecord(id="feedbeef", kind="release", model="busy", target="local",
                            outcome="running", user="someone", started=time.time(),
                            pid=os.getpid())
    assert store.begin_release(running, lambda _pid: True) is None
    reply = await call("POST", "releases", body={"notebook": "release.ipynb", "model": "busy"})
    assert reply.code == 409 and "feedbeef" in reply.json()["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"notebook": "release.ipynb"}, "model"),
    ({"notebook": "release.ipynb", "model": "bad name!"}, "Model name"),
    ({"notebook": "release.ipynb", "model": "m\n"}, "Model name"),
    ({"model": "m"}, "notebook"),
    ({"notebook": "../x.ipynb", "model": "m"}, "Refused"),
    ({"notebook": "/etc/x.ipynb", "model": "m"}, "Refused"),
    ({"notebook": "sub/../../x.ipynb", "model": "m"}, "Refused"),
    ({"notebook": "notes.txt", "model": "m"}, "notebook"),
    ({"notebook": "missing.ipynb", "model": "m"}, "no notebook"),
    ({"notebook": "dir.ipynb", "model": "m"}, "no notebook"),
    ({"notebook": "release.ipynb", "model": "m", "to": "mars"}, "to must be"),
    ({"notebook": "release.ipynb", "model": "m", "gates": ["accuracy big"]}, "gates"),
    ({"notebook": "release.ipynb", "model": "m", "gates": "record:a > 1"}, "gates"),
    ({"notebook": "release.ipynb", "model": "m", "parameters": [1]}, "parameters"),
    ({"notebook": "release.ipynb", "model": "m", "parameters": {"-x": 1}}, "parameters"),
    ({"notebook": "release.ipynb", "model": "m", "registry": "r:5000"}, "registry"),
    ({"notebook": "release.ipynb", "model": "m", "to": "kubernetes"}, "registry"),
    ({"notebook": "release.ipynb", "model": "m", "example": [1]}, "example"),
])
async def test_bad_release_bodies_are_400_naming_the_field(call, jp_root_dir: Path, body: dict,
                                                           field: str) -> None:
    _notebook(jp_root_dir)
    (jp_root_dir / "notes.txt").write_text("not a notebook")
    (jp_root_dir / "dir.ipynb").mkdir()
    reply = await call("POST", "releases", body=body, validate=False)
    assert reply.code == 400, (body, reply.body)
    assert field in reply.json()["message"], reply.json()


async def test_a_symlink_out_of_the_root_is_refused(call, jp_root_dir: Path, tmp_path: Path) -> None:
    outside = _notebook(tmp_path, "outside.ipynb")
    (jp_root_dir / "link.ipynb").symlink_to(outside)
    reply = await call("POST", "releases", body={"notebook": "link.ipynb", "model": "m"})
    assert reply.code == 400 and "outside" in reply.json()["message"]


async def test_bad_model_filter_is_400(call) -> None:
    reply = await call("GET", "releases", params={"model": "no such/model"})
    assert reply.code == 400 and "Model name" in reply.json()["message"]


async def test_releases_without_the_token_are_403(jp_fetch, jp_root_dir: Path) -> None:
    from tornado.httpclient import HTTPClientError

    _notebook(jp_root_dir)
    for method, body in (("GET", None), ("POST", b'{"notebook": "release.ipynb", "model": "m"}')):
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("cellship", "api", "releases", method=method, body=body,
                           headers={"Authorization": ""})
        assert err.value.code == 403, method


async def test_version_lists_releases(call) -> None:
    assert "releases" in (await call("GET", "version")).json()["capabilities"]
