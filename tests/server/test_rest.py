"""The REST API of the cellship server extension, through a real in-process Jupyter server.
Every reply is validated against openapi.yaml by the ``call`` fixture."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from cellship.jupyter.routes import ROUTES
from tests.server.records import fake_job


async def test_version(call) -> None:
    reply = await call("GET", "version")
    assert reply.code == 200
    data = reply.json()
    assert data["api_version"] == 1 and "jobs" in data["capabilities"]


@pytest.mark.parametrize("path", ["version", "jobs", "jobs/abc", "jobs/abc/logs", "batches"])
async def test_requests_without_the_token_are_refused(call, path: str) -> None:
    reply = await call("GET", path, headers={"Authorization": ""})
    assert reply.code == 403
    assert reply.json()["code"] == 403


async def test_list_newest_first_with_filters(call, store, cellship_home: Path) -> None:
    now = time.time()
    a = fake_job(store, cellship_home, name="alpha", status="succeeded", created=now - 30)
    b = fake_job(store, cellship_home, name="beta", status="failed", created=now - 20, workers=2)
    c = fake_job(store, cellship_home, name="alphabet", status="running", created=now - 10)
    data = (await call("GET", "jobs")).json()
    assert [j["id"] for j in data["jobs"]] == [c.id, b.id, a.id]
    assert data["count"] == data["total"] == 3
    beta = data["jobs"][1]
    assert beta["workers"] == 2 and [r["key"] for r in beta["replicas"]] == ["worker-0", "worker-1"]
    assert beta["status"] == "failed" and beta["duration"] == pytest.approx(12.5)
    assert [j["name"] for j in (await call("GET", "jobs", params={"name": "alpha"})).json()["jobs"]] \
        == ["alphabet", "alpha"]
    assert [j["id"] for j in (await call("GET", "jobs", params={"status": "failed"})).json()["jobs"]] \
        == [b.id]
    page = (await call("GET", "jobs", params={"limit": "1", "offset": "1"})).json()
    assert [j["id"] for j in page["jobs"]] == [b.id] and page["total"] == 3


async def test_list_and_detail_say_who_submitted_each_job(call, store, cellship_home: Path,
                                                         monkeypatch) -> None:
    """A local job is the user the server runs for; a cluster job the user its launch
    recorded (kubernetes.json), null when none was (a job launched by an older cellship)."""
    from cellship.store import JobRecord

    monkeypatch.setenv("JUPYTERHUB_USER", "alice@example.org")
    local = fake_job(store, cellship_home, name="mine", created=time.time() - 30)
    for job_id, state in (("c1a57e12", {"user": "bob"}), ("c1a57e13", {})):
        job_dir = cellship_home / "jobs" / job_id
        job_dir.mkdir(parents=True)
        (job_dir / "kubernetes.json").write_text(json.dumps(state))
        store.create_job(JobRecord(
            id=job_id, name=f"cluster-{job_id}", status="pending", backend="kubernetes",
            spec={"workers": 1, "ps": 0, "gpus": 0, "strategy": "single"},
            job_dir=str(job_dir), output_dir=str(job_dir / "output"),
            logdir=str(job_dir / "tensorboard"), created=time.time() - 20))
        store.transition(job_id, "cancelled", ended=time.time() - 10)
    data = (await call("GET", "jobs")).json()
    assert [(j["name"], j["user"]) for j in data["jobs"]] == [
        ("cluster-c1a57e13", None), ("cluster-c1a57e12", "bob"), ("mine", "alice-example.org")]
    assert (await call("GET", f"jobs/{local.id}")).json()["user"] == "alice-example.org"


async def test_list_follows_changes_and_deletions(call, store, cellship_home: Path) -> None:
    """Finished jobs' rows are kept serialized between polls (jupyter/listing.py): a job
    that changes or goes away must still show as it is now."""
    old = fake_job(store, cellship_home, name="old", created=time.time() - 100, duration=1)
    live = fake_job(store, cellship_home, name="live", status="running")
    first = {j["name"]: j["status"] for j in (await call("GET", "jobs")).json()["jobs"]}
    assert first == {"old": "succeeded", "live": "running"}
    store.transition(live.id, "failed", ended=time.time(), error="boom")
    assert (await call("DELETE", f"jobs/{old.id}")).code == 204
    after = (await call("GET", "jobs")).json()
    assert [(j["name"], j["status"]) for j in after["jobs"]] == [("live", "failed")]
    assert after["total"] == 1


async def test_bad_filters_are_400(call) -> None:
    for params in ({"status": "exploded"}, {"limit": "lots"}, {"limit": "0"},
                   {"offset": "99999999999999999999"}, {"offset": "9" * 5000}):
        reply = await call("GET", "jobs", params=params, validate=params.get("offset") is None)
        assert reply.code == 400 and reply.json()["code"] == 400, params
    assert (await call("GET", "batches", params={"limit": "0"})).code == 400


async def test_the_end_event_names_the_status_without_following(call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home, status="failed", logs={"worker-0": "one\n"})
    events = _events((await call("GET", f"jobs/{job.id}/logs", params={"follow": "false"})).body)
    assert events[-1]["event"] == "end" and json.loads(events[-1]["data"]) == {"status": "failed"}


async def test_methods_no_handler_defines_are_403_without_the_token(jp_fetch) -> None:
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("cellship", "api", "version", method="PUT", body=b"{}",
                       headers={"Authorization": ""})
    assert info.value.code == 403


async def test_detail_has_replicas_events_and_paths(call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home, name="<img src=x onerror=alert(1)>", workers=2)
    data = (await call("GET", f"jobs/{job.id}")).json()
    assert data["name"] == "<img src=x onerror=alert(1)>"  # JSON carries text; the panel shows text
    assert [(r["label"], r["state"]) for r in data["replicas"]] == [("worker 0", "exited"),
                                                                  ("worker 1", "exited")]
    assert any(e["kind"] == "status" for e in data["events"])
    assert data["output_dir"].endswith("/output")


async def test_detail_says_where_each_replica_runs_and_why_it_cannot_start(
        call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home, workers=2, status="pending")
    store.update_replica(job.id, "worker", 0, pod="train-w0", node="127.0.0.1")
    store.update_replica(job.id, "worker", 1, pod="train-w1", reason="Unschedulable",
                         diagnosis="Pod cannot be scheduled yet.")
    data = (await call("GET", f"jobs/{job.id}")).json()  # nullable and set: both valid
    assert [(r["pod"], r["node"], r["reason"], r["diagnosis"]) for r in data["replicas"]] == [
        ("train-w0", "127.0.0.1", None, None),
        ("train-w1", None, "Unschedulable", "Pod cannot be scheduled yet.")]


async def test_unknown_job_is_404_naming_the_id(call) -> None:
    for method, path in (("GET", "jobs/nosuchid"), ("GET", "jobs/nosuchid/logs"),
                         ("GET", "jobs/nosuchid/metrics"), ("POST", "jobs/nosuchid/cancel"),
                         ("DELETE", "jobs/nosuchid"), ("POST", "jobs/nosuchid/tensorboard")):
        reply = await call(method, path)
        assert reply.code == 404, (method, path)
        assert "nosuchid" in reply.json()["message"], (method, path)


async def test_unknown_endpoint_is_json_404(call) -> None:
    reply = await call("GET", "nothing/here", validate=False)
    assert reply.code == 404 and reply.json()["code"] == 404


async def test_logs_page_and_resume(call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home, workers=2, logs={
        "worker-0": "w0 one\nw0 two\n\x1ecellship-metric {\"run\":\"train\"}\n",
        "worker-1": "w1 one\nI0000 00:00:17.1 123 file.cc:12] tf chatter\n"})
    page = (await call("GET", f"jobs/{job.id}/logs", params={"format": "json"})).json()
    assert [(l["replica"], l["text"]) for l in page["lines"]] == [
        ("worker 0", "w0 one"), ("worker 0", "w0 two"), ("worker 1", "w1 one")]
    assert page["done"] is True
    noisy = (await call("GET", f"jobs/{job.id}/logs",
                        params={"format": "json", "tf_noise": "true"})).json()
    assert len(noisy["lines"]) == 4  # the relay line never shows
    # Resuming from the cursor returns only what came after it.
    with open(job.replicas[1].log_path, "a") as handle:
        handle.write("w1 later\n")
    later = (await call("GET", f"jobs/{job.id}/logs",
                        params={"format": "json", "offset": page["offset"]})).json()
    assert [l["text"] for l in later["lines"]] == ["w1 later"]
    one = (await call("GET", f"jobs/{job.id}/logs",
                      params={"format": "json", "replica": "worker-1"})).json()
    assert {l["replica"] for l in one["lines"]} == {"worker 1"}


@pytest.mark.parametrize("replica", ["../../../etc/passwd", "worker-0/../../x", "/etc/passwd",
                                     "..", "worker-0\\..\\x"])
async def test_log_paths_are_refused(call, store, cellship_home: Path, replica: str) -> None:
    job = fake_job(store, cellship_home)
    reply = await call("GET", f"jobs/{job.id}/logs", params={"replica": replica, "format": "json"})
    assert reply.code == 400 and "Refused" in reply.json()["message"]


async def test_unknown_replica_and_bad_cursor(call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home)
    reply = await call("GET", f"jobs/{job.id}/logs", params={"replica": "worker-7", "format": "json"})
    assert reply.code == 404 and "worker-0" in reply.json()["message"]
    reply = await call("GET", f"jobs/{job.id}/logs", params={"offset": "1,2,3", "format": "json"})
    assert reply.code == 400


def _events(body: bytes) -> list[dict]:
    events = []
    for block in body.decode().split("\n\n"):
        event = {"event": "message"}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            field, value = line.split(":", 1)
            event[field] = value.lstrip(" ")
        if "data" in event:
            events.append(event)
    return events


async def test_sse_stream_resumes_from_last_event_id(call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home, logs={"worker-0": "one\ntwo\n"})
    first = await call("GET", f"jobs/{job.id}/logs")
    assert first.content_type == "text/event-stream"
    events = _events(first.body)
    assert json.loads(events[0]["data"])["lines"] == [{"replica": "worker 0", "text": "one"},
                                                      {"replica": "worker 0", "text": "two"}]
    assert events[-1]["event"] == "end" and json.loads(events[-1]["data"]) == {"status": "succeeded"}
    with open(job.replicas[0].log_path, "a") as handle:
        handle.write("three\n")
    again = _events((await call("GET", f"jobs/{job.id}/logs",
                                headers={"Last-Event-ID": events[0]["id"]})).body)
    assert json.loads(again[0]["data"])["lines"] == [{"replica": "worker 0", "text": "three"}]


async def test_sse_follows_a_running_job_until_it_ends(jp_fetch, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home, status="running")
    chunks: list[bytes] = []

    async def write_then_finish() -> None:
        for i in range(3):
            await asyncio.sleep(0.3)
            with open(job.replicas[0].log_path, "a") as handle:
                handle.write(f"step {i}\n")
        await asyncio.sleep(0.3)
        with open(job.replicas[0].log_path, "a") as handle:
            handle.write("no newline at the end")
        store.transition(job.id, "succeeded", ended=time.time())

    writer = asyncio.ensure_future(write_then_finish())
    await jp_fetch("cellship", "api", "jobs", job.id, "logs", streaming_callback=chunks.append,
                   request_timeout=30)
    await writer
    events = _events(b"".join(chunks))
    texts = [l["text"] for e in events if e["event"] == "message"
             for l in json.loads(e["data"])["lines"]]
    assert texts == ["step 0", "step 1", "step 2", "no newline at the end"]
    assert events[-1]["event"] == "end"
    assert len([e for e in events if e["event"] == "message"]) >= 3  # streamed, not at the end


async def test_metrics_of_a_job_without_scalars(call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home)
    data = (await call("GET", f"jobs/{job.id}/metrics")).json()
    assert data == {"id": job.id, "series": []}


async def test_metrics_series_from_event_files(call, store, cellship_home: Path) -> None:
    pytest.importorskip("tensorboard")
    from tests.unit.inside.test_eventfile import append, event_file, scalar_event, version_event

    job = fake_job(store, cellship_home)
    append(event_file(Path(job.logdir) / "train"), version_event(),
           *(scalar_event("epoch_loss", step, value) for step, value in ((0, 1.0), (1, 0.5), (2, 0.25))))
    data = (await call("GET", f"jobs/{job.id}/metrics")).json()
    assert data["series"] == [{"run": "train", "tag": "epoch_loss", "steps": [0, 1, 2],
                               "values": [1.0, 0.5, 0.25], "last": 0.25}]


async def test_files_listing_and_traversal(call, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home)
    (Path(job.output_dir) / "model.txt").write_text("weights")
    listing = (await call("GET", f"jobs/{job.id}/files", params={"path": "output"})).json()
    assert listing["type"] == "directory" and [e["name"] for e in listing["entries"]] == ["model.txt"]
    program = (await call("GET", f"jobs/{job.id}/files", params={"path": "program.py"})).json()
    assert program["content"] == "print('hello')\n"
    (Path(job.job_dir) / "escape").symlink_to("/etc")
    for bad in ("../../cellship.db", "/etc/passwd", "output/../../..", "escape/passwd"):
        reply = await call("GET", f"jobs/{job.id}/files", params={"path": bad})
        assert reply.code == 400 and "Refused" in reply.json()["message"], bad
    assert (await call("GET", f"jobs/{job.id}/files", params={"path": "nope"})).code == 404


async def test_delete_finished_job_and_refuse_a_running_one(call, store, cellship_home: Path) -> None:
    done = fake_job(store, cellship_home)
    assert (await call("DELETE", f"jobs/{done.id}")).code == 204
    assert not Path(done.job_dir).exists()
    assert (await call("GET", f"jobs/{done.id}")).code == 404
    running = fake_job(store, cellship_home, status="running")
    reply = await call("DELETE", f"jobs/{running.id}")
    assert reply.code == 409 and "cancel it" in reply.json()["message"]


async def test_cancel_a_real_job_stops_its_processes(call, tmp_path: Path) -> None:
    import cellship
    from tests.conftest import job_processes, wait_until_gone

    script = tmp_path / "sleeper.py"
    script.write_text("import time\nfor i in range(600):\n    print('tick', i, flush=True)\n"
                      "    time.sleep(0.2)\n")
    job = cellship.submit_script(script, workers=1, name="to-cancel")
    deadline = time.monotonic() + 30
    log = Path(job.record.replicas[0].log_path)
    while not log.exists() or "tick 1" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.1)
    assert job_processes(job.id)
    data = (await call("POST", f"jobs/{job.id}/cancel")).json()
    assert data["status"] == "cancelled"
    wait_until_gone(job.id, within=5)
    again = await call("POST", f"jobs/{job.id}/cancel")
    assert again.code == 200 and again.json()["status"] == "cancelled"


async def test_batches_list_start_detail(call, jp_root_dir: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(x)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (jp_root_dir / "sub").mkdir()
    nbformat.write(nb, jp_root_dir / "sub" / "nb.ipynb")
    assert (await call("GET", "batches")).json() == {"batches": [], "count": 0}
    started = await call("POST", "batches", body={"notebook": "sub/nb.ipynb", "grid": {"x": [1, 2]}})
    assert started.code == 201
    batch = started.json()
    assert batch["runs"] == 2 and batch["name"] == "nb"
    listed = (await call("GET", "batches")).json()
    assert [b["id"] for b in listed["batches"]] == [batch["id"]]
    detail = (await call("GET", f"batches/{batch['id']}")).json()
    assert [row["x"] for row in detail["rows"]] == [1, 2]
    cancelled = (await call("POST", f"batches/{batch['id']}/cancel")).json()
    assert cancelled["status"] in ("cancelled", "succeeded", "failed")


@pytest.mark.parametrize("notebook", ["../outside.ipynb", "/etc/x.ipynb", "sub/../../x.ipynb"])
async def test_batch_notebook_outside_the_root_is_refused(call, notebook: str) -> None:
    reply = await call("POST", "batches", body={"notebook": notebook})
    assert reply.code == 400 and "Refused" in reply.json()["message"]


async def test_batch_bad_bodies(call) -> None:
    for body in ({}, {"notebook": "x.txt"}, {"notebook": "x.ipynb", "parallel": "two"},
                 {"notebook": "x.ipynb", "grid": {"lr": []}}):
        reply = await call("POST", "batches", body=body, validate=False)
        assert reply.code == 400, body
    reply = await call("POST", "batches", body={"notebook": "missing.ipynb"})
    assert reply.code == 400 and "No notebook" in reply.json()["message"]
    assert (await call("GET", "batches/nope")).code == 404


def test_every_route_is_in_the_openapi_file(openapi) -> None:
    import yaml

    from cellship.jupyter import OPENAPI

    documented = set(yaml.safe_load(Path(OPENAPI).read_text())["paths"])
    routed = {"/" + pattern.replace("(?P<job_id>[^/]+)", "{job_id}")
              .replace("(?P<batch_id>[^/]+)", "{batch_id}").replace("(?P<name>[^/]+)", "{name}")
              .replace("(?P<pid>[^/]+)", "{pid}")
              for pattern, _ in ROUTES if not pattern.startswith("(?P<path>")}
    assert routed == documented


def test_the_installed_config_enables_the_extension() -> None:
    """`pip install` (editable too) drops the config that enables the server extension."""
    import sys

    config = Path(sys.prefix) / "etc/jupyter/jupyter_server_config.d/cellship.json"
    assert json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]["cellship.jupyter"]


@pytest.mark.tensorboard
async def test_tensorboard_starts_and_is_reused(call, store, cellship_home: Path) -> None:
    pytest.importorskip("tensorboard")
    import urllib.request

    from cellship.watch.tensorboard import stop_all

    job = fake_job(store, cellship_home, name="tb-job")
    try:
        first = await call("POST", f"jobs/{job.id}/tensorboard")
        assert first.code == 200, first.body
        data = first.json()
        assert data["runs"] == ["tb-job"] and data["url"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(data["url"], timeout=10) as response:
            assert response.status == 200
        again = (await call("POST", f"jobs/{job.id}/tensorboard")).json()
        assert again["pid"] == data["pid"]
    finally:
        stop_all()


async def test_models_lists_exported_versions(call, cellship_home: Path) -> None:
    import json as _json

    assert (await call("GET", "models")).json() == {"models": [], "count": 0}
    for version in (1, 2):
        directory = cellship_home / "models" / "digits" / str(version)
        directory.mkdir(parents=True)
        (directory / "saved_model.pb").write_bytes(b"")
        (directory / "cellship-manifest.json").write_text(_json.dumps({
            "name": "digits", "version": version, "created": "2026-11-25T10:00:00+00:00",
            "source": {"kind": "job", "job_name": "<b>cnn</b>", "job_id": "abcd1234"},
            "metrics": {"train/epoch_loss": 0.25}}))
    data = (await call("GET", "models")).json()
    assert [(m["name"], m["version"]) for m in data["models"]] == [("digits", 1), ("digits", 2)]
    assert data["models"][0]["source"] == "job <b>cnn</b> (abcd1234)"
    assert data["models"][0]["metrics"] == {"train/epoch_loss": 0.25}
    assert (await call("GET", "models/digits")).json()["count"] == 2
    missing = await call("GET", "models/nope")
    assert missing.code == 404 and "nope" in missing.json()["message"]
    bad = await call("GET", "models/..%2F..%2Fetc", validate=False)
    assert bad.code in (400, 404)
