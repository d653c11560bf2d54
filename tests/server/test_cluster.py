"""The panel's view of what runs beyond this store: running ``cellship serve`` servers (a
real one), Kubernetes deployments and cluster-only jobs (the fake Kubernetes client,
served to the in-process Jupyter server). Replies are validated against openapi.yaml."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from cellship.kube import kinds
from tests.conftest import hide_clusters
from tests.unit.kube.test_flags import foreign_job
from tests.unit.kube_fake import FakeKube, serve
from tests.unit.serve.test_registry import _enter


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch, tmp_path):
    hide_clusters(monkeypatch, tmp_path)


@pytest.fixture
def half_plus_three(tmp_path: Path) -> Path:
    from tests.integration.serving_models import half_plus_three

    return half_plus_three(tmp_path / "half_plus_three" / "1").parent


async def test_servers_lists_a_running_cellship_serve_which_leaves_on_sigterm(
        call, half_plus_three) -> None:
    from cellship.serve import registry, start_server
    from cellship.watch.tensorboard.registry import registry as locked

    assert (await call("GET", "servers")).json() == {"servers": [], "count": 0}
    with start_server(str(half_plus_three), args=("--drain-grace", "2")) as server:
        reply = await call("GET", "servers")
        assert reply.code == 200
        (entry,) = reply.json()["servers"]
        assert entry["pid"] == server.pid and entry["url"] == server.url
        assert entry["models"] == ["half_plus_three"]
        assert entry["repository"] == {"half_plus_three": str(half_plus_three)}
        assert entry["grpc_port"] and f":{entry['grpc_port']}" in (server.grpc_target or "")
        os.kill(server.pid, signal.SIGTERM)  # the drain path itself leaves the registry
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with locked(registry.root()) as entries:  # as written, before any pruning
                if not entries:
                    break
            await asyncio.sleep(0.05)
        assert entries == [] and server.running()  # gone while still draining
        assert server.process.wait(timeout=30) == 0
    assert (await call("GET", "servers")).json()["count"] == 0


async def test_servers_stop(call, stand_in) -> None:
    _enter(stand_in.pid)
    stopped = await call("POST", f"servers/{stand_in.pid}/stop")
    assert stopped.code == 200 and stopped.json()["pid"] == stand_in.pid
    assert stand_in.wait(timeout=10) == 0  # SIGTERM: it drained and exited
    assert (await call("GET", "servers")).json()["count"] == 0
    gone = await call("POST", f"servers/{stand_in.pid}/stop")
    assert gone.code == 404 and "No running cellship serve has pid" in gone.json()["message"]
    assert (await call("POST", "servers/12ab/stop")).code == 400


async def test_deployments_without_a_cluster_is_an_empty_list_with_a_reason(call) -> None:
    reply = await call("GET", "deployments")
    assert reply.code == 200
    data = reply.json()
    assert data["deployments"] == [] and data["count"] == 0
    assert data["reason"].startswith("No Kubernetes cluster configured")


async def test_deployments_listed_and_undeployed(call, monkeypatch) -> None:
    from cellship.deployment import deploy

    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    kube = serve(monkeypatch, FakeKube())
    deploy("registry.example.com/digits:1", "digits", namespace="ml", model_name="digits",
           client=kube, wait=False)
    reply = await call("GET", "deployments", params={"namespace": "ml"})
    assert reply.code == 200 and reply.json()["reason"] is None
    (item,) = reply.json()["deployments"]
    assert (item["name"], item["namespace"], item["ready"], item["desired"], item["image"],
            item["user"]) == ("digits", "ml", 0, 1, "registry.example.com/digits:1", "alice")
    assert item["url"] == "http://digits.ml.svc:8501/v1/models/digits"

    kube.deny("delete", kinds.of("Deployment").resource)
    refused = await call("DELETE", "deployments/digits", params={"namespace": "ml"})
    assert refused.code == 403 and refused.json()["code"] == 403
    assert 'cannot delete resource "deployments' in refused.json()["message"]
    kube.denied.clear()
    done = await call("DELETE", "deployments/digits", params={"namespace": "ml"})
    assert done.code == 200 and done.json()["kind"] == "Deployment"
    missing = await call("DELETE", "deployments/digits", params={"namespace": "ml"})
    assert missing.code == 404
    assert "No cellship deployment named 'digits' in namespace ml" in missing.json()["message"]


async def test_deployments_of_an_unanswering_cluster(call, monkeypatch) -> None:
    from cellship.jupyter import deployments

    class Slow(FakeKube):
        def list(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(1)
            return super().list(*args, **kwargs)

    serve(monkeypatch, Slow())
    monkeypatch.setattr(deployments, "LIST_TIMEOUT_SECONDS", 0.1)
    reply = await call("GET", "deployments")
    assert reply.code == 200 and "did not answer within 0.1 s" in reply.json()["reason"]
    await asyncio.sleep(1)  # let the abandoned call end before the fake goes


async def test_jobs_with_cluster_adds_cluster_only_jobs(call, monkeypatch) -> None:
    kube = serve(monkeypatch, FakeKube())
    foreign_job(kube, "ffff0001", "theirs", "default", ["Running"])
    plain = (await call("GET", "jobs")).json()
    assert "cluster_jobs" not in plain
    reply = await call("GET", "jobs", params={"cluster": "1"})
    assert reply.code == 200
    data = reply.json()
    assert data["jobs"] == [] and data["cluster_reason"] is None
    (job,) = data["cluster_jobs"]
    assert (job["id"], job["origin"], job["pods"]) == ("ffff0001", "cluster", {"worker-0": "Running"})


async def test_jobs_with_cluster_but_none_configured(call) -> None:
    data = (await call("GET", "jobs", params={"cluster": "1"})).json()
    assert data["cluster_jobs"] == []
    assert data["cluster_reason"].startswith("cluster jobs not listed: No Kubernetes cluster")
