"""cellship.train.local.supervisor helpers that need no job: GPUs per replica and free ports."""

from __future__ import annotations

import socket
import subprocess

import pytest

from cellship.train.local import supervisor
from cellship.train.local.supervisor import assign_gpus, free_ports, visible_gpus
from cellship.train.spec import JobSpec, Replica


def test_assign_gpus_multi_worker_disjoint():
    spec = JobSpec(workers=2, gpus=2)
    out = assign_gpus(spec, ["0", "1", "2", "3"])
    assert out == {Replica("worker", 0): "0,1", Replica("worker", 1): "2,3"}


def test_assign_gpus_parameter_server_gives_ps_none():
    spec = JobSpec(workers=2, ps=2, gpus=1)
    out = assign_gpus(spec, ["4", "5", "6", "7"])
    assert out[Replica("ps", 0)] == "" and out[Replica("ps", 1)] == ""
    computing = [out[Replica("chief", 0)], out[Replica("worker", 0)], out[Replica("worker", 1)]]
    assert sorted(computing) == ["4", "5", "6"]  # one each, none shared
    assert set(out) == set(spec.replicas())


def test_assign_gpus_without_gpus_hides_all():
    spec = JobSpec(workers=3)
    assert set(assign_gpus(spec, ["0", "1"]).values()) == {""}
    assert set(assign_gpus(spec, []).values()) == {""}


def test_assign_gpus_too_few():
    with pytest.raises(ValueError) as info:
        assign_gpus(JobSpec(workers=2, ps=1, gpus=2), ["0", "1", "2", "3", "4"])
    message = str(info.value)
    assert "3 replicas (6 in all)" in message and "has 5" in message


def test_free_ports_are_distinct_and_bindable():
    ports, socks = free_ports(4)
    assert len(set(ports)) == 4
    assert all(isinstance(p, int) and 0 < p < 65536 for p in ports)
    assert [s.getsockname()[1] for s in socks] == ports
    for sock in socks:
        sock.close()
    for port in ports:  # what a replica does once the supervisor lets go of the port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize("value, expected", [("2,3", ["2", "3"]), ("", []), ("-1", []),
                                             ("0", ["0"]), ("1,,2", ["1", "2"]),
                                             ("0, 1", ["0", "1"])])
def test_visible_gpus_honours_cuda_visible_devices(monkeypatch, value, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    monkeypatch.setattr(supervisor.subprocess, "run",
                        lambda *a, **k: pytest.fail("nvidia-smi must not be asked"))
    assert visible_gpus() == expected


def test_visible_gpus_asks_nvidia_smi(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def fake_run(cmd, **kwargs):
        assert cmd[0] == "nvidia-smi"
        return subprocess.CompletedProcess(cmd, 0, stdout="0\n1\n\n", stderr="")

    monkeypatch.setattr(supervisor.subprocess, "run", fake_run)
    assert visible_gpus() == ["0", "1"]


def test_visible_gpus_without_nvidia_smi(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def missing(cmd, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(supervisor.subprocess, "run", missing)
    assert visible_gpus() == []
