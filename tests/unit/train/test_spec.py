"""cellship.train.spec, cellship.train.options and cellship.train.tfconfig: the job's shape, validated once."""

from __future__ import annotations

import argparse
import json

import pytest

from cellship.durations import parse_duration
from cellship.errors import UsageError
from cellship.train.options import JOB_OPTIONS, add_job_options, option_names, spec_from_args
from cellship.train.spec import JobSpec, Replica, parse_env, parse_ship
from cellship.train.tfconfig import cluster_def, tf_config, tf_configs

# -- JobSpec validation ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    (dict(workers=0), "--workers must be a whole number >= 1, got 0"),
    (dict(workers=-2), "--workers must be a whole number >= 1"),
    (dict(workers=1.5), "--workers must be a whole number"),
    (dict(ps=-1), "--ps must be a whole number >= 0, got -1"),
    (dict(gpus=-1), "--gpus must be a whole number >= 0"),
    (dict(max_restarts=-1), "--max-restarts must be a whole number >= 0"),
    (dict(timeout=0), "--timeout must be positive"),
    (dict(startup_timeout=-5), "--startup-timeout must be positive"),
    (dict(name="bad name"), "is not a valid job name"),
    (dict(name="-leading-dash"), "is not a valid job name"),
    (dict(name="x" * 64), "is not a valid job name"),
    (dict(env={"TF_CONFIG": "{}"}), "--env TF_CONFIG is set by cellship"),
    (dict(env={"CELLSHIP_JOB_ID": "x"}), "--env CELLSHIP_JOB_ID is set by cellship"),
    (dict(env={"1BAD": "x"}), "is not a valid environment variable name"),
    (dict(ship=("ok", "not-a-name")), "--ship 'not-a-name' is not a Python variable name"),
])
def test_jobspec_rejects(kwargs, fragment):
    with pytest.raises(UsageError) as info:
        JobSpec(**kwargs)
    assert fragment in str(info.value)


def test_jobspec_accepts_valid_values():
    spec = JobSpec(workers=2, ps=1, gpus=1, name="digits-cnn_v1.2", env={"BATCH": "64"},
                   timeout=60.0, max_restarts=2, ship=("data", "labels"))
    assert spec.name == "digits-cnn_v1.2"
    assert JobSpec(name="x" * 63).name == "x" * 63


# -- topology ------------------------------------------------------------------------------

def test_replicas_multi_worker_mirrored_is_workers_only():
    spec = JobSpec(workers=3)
    assert spec.replicas() == [Replica("worker", 0), Replica("worker", 1), Replica("worker", 2)]
    assert spec.strategy == "multi_worker_mirrored"


def test_replicas_single_worker():
    spec = JobSpec()
    assert spec.replicas() == [Replica("worker", 0)]
    assert spec.strategy == "single"


def test_replicas_parameter_server_has_chief_workers_ps():
    spec = JobSpec(workers=2, ps=2)
    assert spec.replicas() == [Replica("chief", 0), Replica("worker", 0), Replica("worker", 1),
                               Replica("ps", 0), Replica("ps", 1)]
    assert spec.strategy == "parameter_server"
    assert [r.label for r in spec.replicas()] == ["chief", "worker 0", "worker 1", "ps 0", "ps 1"]
    assert [r.key for r in spec.replicas()] == ["chief-0", "worker-0", "worker-1", "ps-0", "ps-1"]


def test_to_dict_from_dict_round_trip():
    spec = JobSpec(workers=2, ps=1, gpus=1, name="exp", env={"A": "1"}, timeout=30.0,
                   startup_timeout=12.5, max_restarts=1, ship=("data",))
    data = spec.to_dict()
    assert data["strategy"] == "parameter_server"
    assert data["ship"] == ["data"] and data["env"] == {"A": "1"}
    # what the store keeps goes through JSON, and carries extra keys (cwd, strategy)
    stored = json.loads(json.dumps(data | {"cwd": "/somewhere"}))
    again = JobSpec.from_dict(stored)
    assert again == spec
    assert again.ship == ("data",)


# -- option parsing ------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("90s", 90.0), ("10m", 600.0),
                                           ("1.5h", 5400.0), ("2min", 120.0), (" 5 sec ", 5.0),
                                           (45, 45.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5", "1h30m", "m"])
def test_parse_duration_rejects(text):
    with pytest.raises(UsageError, match="is not a duration"):
        parse_duration(text)


def test_parse_env():
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    assert parse_env(None) == {}


@pytest.mark.parametrize("pair", ["A", "=1", ""])
def test_parse_env_rejects(pair):
    with pytest.raises(UsageError, match="must look like NAME=VALUE"):
        parse_env([pair])


def test_parse_ship_splits_and_dedupes_in_order():
    assert parse_ship(["a,b", "c", " a , ,d", "b"]) == ("a", "b", "c", "d")
    assert parse_ship(None) == ()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_job_options(parser)
    return parser


def test_spec_from_args_full():
    args = _parser().parse_args(["-w", "3", "--ps", "1", "--gpus", "2", "-n", "exp-1",
                                 "-e", "A=1", "--env", "B=x=y", "--timeout", "10m",
                                 "--startup-timeout", "90", "--max-restarts", "2",
                                 "--ship", "a,b", "--ship", "a", "--detach", "--dry-run"])
    spec = spec_from_args(args)
    assert spec == JobSpec(workers=3, ps=1, gpus=2, name="exp-1", backend="local",
                           env={"A": "1", "B": "x=y"}, timeout=600.0, startup_timeout=90.0,
                           max_restarts=2, ship=("a", "b"))
    assert args.detach and args.dry_run


def test_spec_from_args_defaults(monkeypatch):
    spec = spec_from_args(_parser().parse_args([]))
    assert spec == JobSpec()
    assert spec.startup_timeout == 300.0 and spec.timeout is None
    monkeypatch.setenv("CELLSHIP_BACKEND", "elsewhere")
    assert spec_from_args(_parser().parse_args([])).backend == "elsewhere"
    assert spec_from_args(_parser().parse_args(["-b", "local"])).backend == "local"


@pytest.mark.parametrize("argv, fragment", [(["--workers", "0"], "--workers"),
                                            (["--env", "TF_CONFIG=x"], "TF_CONFIG"),
                                            (["--timeout", "soon"], "'soon' is not a duration"),
                                            (["--ship", "a-b"], "--ship 'a-b'")])
def test_spec_from_args_validates(argv, fragment):
    with pytest.raises(UsageError) as info:
        spec_from_args(_parser().parse_args(argv))
    assert fragment in str(info.value)


def test_option_names_are_every_long_option():
    names = option_names()
    assert len(names) == len(JOB_OPTIONS)
    for expected in ("--workers", "--ps", "--gpus", "--name", "--env", "--ship", "--dry-run"):
        assert expected in names


# -- TF_CONFIG -----------------------------------------------------------------------------

def test_tf_config_multi_worker_mirrored():
    spec = JobSpec(workers=3)
    addresses = {r: f"host:{5000 + r.index}" for r in spec.replicas()}
    configs = tf_configs(spec, addresses)
    assert list(configs) == spec.replicas()
    for replica, text in configs.items():
        config = json.loads(text)
        assert config == {"cluster": {"worker": ["host:5000", "host:5001", "host:5002"]},
                          "task": {"type": "worker", "index": replica.index}}


def test_tf_config_parameter_server():
    spec = JobSpec(workers=2, ps=1)
    addresses = {Replica("chief", 0): "c:1", Replica("worker", 0): "w:1",
                 Replica("worker", 1): "w:2", Replica("ps", 0): "p:1"}
    assert cluster_def(spec, addresses) == {"chief": ["c:1"], "worker": ["w:1", "w:2"],
                                            "ps": ["p:1"]}
    configs = {r.label: json.loads(t) for r, t in tf_configs(spec, addresses).items()}
    assert list(configs) == ["chief", "worker 0", "worker 1", "ps 0"]
    assert configs["chief"]["task"] == {"type": "chief", "index": 0}
    assert configs["worker 1"]["task"] == {"type": "worker", "index": 1}
    assert configs["ps 0"]["task"] == {"type": "ps", "index": 0}
    assert all(c["cluster"] == configs["chief"]["cluster"] for c in configs.values())


def test_tf_config_missing_address():
    spec = JobSpec(workers=2)
    with pytest.raises(ValueError, match="worker 1"):
        tf_config(spec, {Replica("worker", 0): "a:1"}, Replica("worker", 0))
