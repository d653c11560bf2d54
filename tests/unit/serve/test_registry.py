"""The registry of running ``cellship serve`` servers, with stand-in processes whose command
line is a ``cellship serve`` one (the real server is started in tests/server/test_servers.py)."""

from __future__ import annotations

import os
import time

import pytest

from cellship.cli.main import main
from cellship.serve import registry
from cellship.watch.tensorboard.registry import registry as locked


def _enter(pid: int, port: int = 18501, grpc: int | None = 18500) -> None:
    with locked(registry.root()) as entries:
        entries.append({"pid": pid, "host": "127.0.0.1", "port": port, "grpc_port": grpc,
                        "url": f"http://127.0.0.1:{port}", "models": ["digits"],
                        "repository": {"digits": "/models/digits"}, "started": time.time()})


def test_only_live_cellship_serve_processes_are_listed(stand_in) -> None:
    _enter(stand_in.pid)
    _enter(os.getpid(), port=18600)  # alive, but pytest is no cellship serve: pruned
    _enter(2**22 + 12345, port=18700)  # no such process: pruned
    (server,) = registry.running()
    assert (server.pid, server.port, server.grpc_port, server.models) == (
        stand_in.pid, 18501, 18500, ("digits",))
    assert server.to_dict()["repository"] == {"digits": "/models/digits"}
    with locked(registry.root()) as entries:
        assert [e["pid"] for e in entries] == [stand_in.pid]  # the dead were written away
    assert registry.find(18501) == registry.find(18500) == registry.find(stand_in.pid) == server
    assert "digits" in registry.table([server]) and str(stand_in.pid) in registry.table([server])


def test_stop_sends_sigterm_and_forgets(stand_in) -> None:
    _enter(stand_in.pid)
    stopped = registry.stop(18501, timeout=10)
    assert stopped.pid == stand_in.pid and stand_in.wait(timeout=10) == 0
    assert registry.running() == []


def test_stop_refuses_what_is_not_a_cellship_serve() -> None:
    _enter(os.getpid())
    with pytest.raises(registry.ServerNotFound, match="No running cellship serve has pid or "
                       "port 18501 \\(none are running\\)"):
        registry.stop(18501)
    with pytest.raises(registry.ServerNotFound, match="pid or port \\(a number\\)"):
        registry.find("abc")
    assert registry.is_cellship_serve(os.getpid()) is False


def test_record_and_forget_this_process() -> None:
    server = registry.record(host="127.0.0.1", port=8501, grpc_port=None, url="http://x:8501",
                             models={"digits": "/m/digits"})
    with locked(registry.root()) as entries:
        assert entries == [server.to_dict()]
    registry.forget(os.getpid())
    with locked(registry.root()) as entries:
        assert entries == []


def test_cli_lists_and_stops(stand_in, capsys) -> None:
    assert main(["servers"]) == 0
    assert "no cellship serve running" in capsys.readouterr().out
    _enter(stand_in.pid)
    assert main(["servers"]) == 0
    out = capsys.readouterr().out
    assert out.split()[:5] == ["PID", "URL", "GRPC", "MODELS", "STARTED"] and "digits" in out
    assert main(["servers", "--json"]) == 0
    import json

    assert [s["pid"] for s in json.loads(capsys.readouterr().out)] == [stand_in.pid]
    assert main(["servers", "stop"]) == 1
    assert "Say which server to stop" in capsys.readouterr().err
    assert main(["servers", "stop", "18501"]) == 0
    assert f"stopped cellship serve (pid {stand_in.pid})" in capsys.readouterr().out
    assert stand_in.wait(timeout=10) == 0
