"""cellship.cli: the `cellship` command, called in-process (no job is ever started here)."""

from __future__ import annotations

import json

import pytest

from cellship import paths
from cellship.cli import main
from cellship.store import JobRecord, ReplicaRecord, Store
from cellship.train import api


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text("import os\nprint('training', os.getpid())\n")
    return path


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text


def _add_job(job_id: str, name: str, status: str = "pending", log_text: str | None = None,
             tmp_path=None) -> JobRecord:
    store = Store.default()
    log_path = str(tmp_path / f"{job_id}-worker-0.log") if tmp_path else "/nonexistent.log"
    if log_text is not None:
        with open(log_path, "w") as handle:
            handle.write(log_text)
    record = JobRecord(id=job_id, name=name, status="pending", backend="local",
                       spec={"workers": 1, "ps": 0, "gpus": 0, "strategy": "single"},
                       job_dir=str(tmp_path or "/nonexistent"), output_dir="/nonexistent/out",
                       logdir="/nonexistent/tb", created=1000.0,
                       replicas=(ReplicaRecord(job_id, "worker", 0, "pending", None, None, 0,
                                               log_path, None),))
    store.create_job(record)
    if status != "pending":
        if status in ("succeeded",):
            store.transition(job_id, "running", started=1000.0)
        store.transition(job_id, status, ended=1010.0)
    return store.get_job(job_id)


def test_unknown_option_exits_2_and_lists_valid_options(script, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", str(script), "--bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err
    assert "valid options:" in err and "--workers" in err and "--dry-run" in err


def test_bad_option_value_exits_2_and_lists_valid_options(script, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", str(script), "--workers", "many"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid int value: 'many'" in err and "valid options:" in err


def test_unknown_option_of_jobs_names_its_own_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["jobs", "--workers", "2"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "valid options: --json, --status, --limit" in err


def test_train_workers_zero_is_a_sentence(script, capsys):
    assert main(["train", str(script), "--workers", "0"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "cellship: error: --workers must be a whole number >= 1, got 0."
    _no_traceback(captured.err + captured.out)


def test_train_dry_run_prints_program_and_tf_config_per_replica(script, capsys, cellship_home):
    previous = api.last_job()  # process-wide: other tests may have submitted jobs
    assert main(["train", str(script), "--workers", "2", "--ps", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "print('training', os.getpid())" in out
    assert "import cellship.inside.bootstrap" in out
    assert "strategy parameter_server" in out
    configs = {}
    for line in out.splitlines():
        label, sep, rest = line.partition(": ")
        if sep and rest.startswith("{"):
            configs[label] = json.loads(rest)
    assert list(configs) == ["chief", "worker 0", "worker 1", "ps 0"]
    assert configs["worker 1"]["task"] == {"type": "worker", "index": 1}
    assert configs["ps 0"]["task"] == {"type": "ps", "index": 0}
    cluster = configs["chief"]["cluster"]
    assert (len(cluster["chief"]), len(cluster["worker"]), len(cluster["ps"])) == (1, 2, 1)
    # nothing was started or recorded
    assert Store(paths.store_path()).count_jobs() == 0
    jobs_dir = cellship_home / "jobs"
    assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == []
    assert api.last_job() is previous


def test_train_dry_run_mwms(script, capsys):
    assert main(["train", str(script), "-w", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    labels = [line.split(":")[0] for line in out.splitlines() if line.startswith("worker ")]
    assert labels == ["worker 0", "worker 1", "worker 2"]
    assert "strategy multi_worker_mirrored" in out


def test_train_dry_run_syntax_error(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("x = (\n")
    assert main(["train", str(bad), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "Syntax error in" in err and "bad.py" in err
    _no_traceback(err)


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_train_missing_file(tmp_path, capsys, extra):
    missing = tmp_path / "missing.py"
    assert main(["train", str(missing), *extra]) == 1
    err = capsys.readouterr().err
    assert f"Cannot read {missing}" in err and "No such file" in err
    _no_traceback(err)
    assert Store(paths.store_path()).count_jobs() == 0


def test_train_ship_refused(script, capsys):
    assert main(["train", str(script), "--ship", "a", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "--ship" in err and "a script has none" in err


def test_jobs_json_on_empty_store(capsys):
    assert main(["jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_jobs_table_on_empty_store(capsys):
    assert main(["jobs"]) == 0
    assert "no jobs yet" in capsys.readouterr().out


def test_jobs_lists_stored_jobs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    _add_job("abcd1234", "exp", status="failed", tmp_path=tmp_path)
    assert main(["jobs", "--json"]) == 0
    [job] = json.loads(capsys.readouterr().out)
    assert (job["id"], job["name"], job["status"], job["user"]) == (
        "abcd1234", "exp", "failed", "alice")
    assert main(["jobs", "--status", "running"]) == 0
    assert "no jobs yet" in capsys.readouterr().out
    assert main(["jobs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:6] == ["ID", "NAME", "STATUS", "BACKEND", "USER", "REPLICAS"]
    assert table[1].split()[:6] == ["abcd1234", "exp", "failed", "local", "alice", "1"]


def test_status_unknown_job(capsys):
    assert main(["status", "nosuchjob"]) == 1
    err = capsys.readouterr().err
    assert "'nosuchjob'" in err
    _no_traceback(err)


def test_status_of_a_stored_job(tmp_path, capsys):
    _add_job("abcd1234", "exp", status="succeeded", tmp_path=tmp_path)
    assert main(["status", "exp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["id"], data["status"], data["duration"]) == ("abcd1234", "succeeded", 10.0)
    assert data["replicas"][0]["type"] == "worker"
    assert main(["status", "abcd"]) == 0
    out = capsys.readouterr().out
    assert "job exp (abcd1234) succeeded in 10.0 s" in out
    assert "worker 0" in out


def test_logs_of_a_stored_job_hide_tf_noise(tmp_path, capsys):
    noise = "I0000 00:00:1795613920.270057    3322 port.cc:153] oneDNN custom operations are on."
    _add_job("abcd1234", "exp", status="failed", tmp_path=tmp_path,
             log_text=f"{noise}\nEpoch 1/1\nloss: 0.5\n")
    assert main(["logs", "exp"]) == 0
    assert capsys.readouterr().out.splitlines() == ["[worker 0] Epoch 1/1", "[worker 0] loss: 0.5"]
    assert main(["logs", "exp", "--tf-noise"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"[worker 0] {noise}"


def test_cancel_finished_and_pending_jobs(tmp_path, capsys):
    _add_job("aaaa1111", "done", status="succeeded", tmp_path=tmp_path)
    _add_job("bbbb2222", "waiting", tmp_path=tmp_path)
    assert main(["cancel", "done"]) == 0
    assert "had already succeeded; nothing to cancel" in capsys.readouterr().out
    assert Store.default().get_job("aaaa1111").status == "succeeded"
    assert main(["cancel", "waiting"]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert Store.default().get_job("bbbb2222").status == "cancelled"


def test_cancel_now_of_a_local_job_is_refused_with_a_sentence(tmp_path, capsys):
    _add_job("cccc3333", "loc", tmp_path=tmp_path)
    assert main(["cancel", "loc", "--now"]) == 1
    err = capsys.readouterr().err
    assert "ran on the local backend" in err and "for cluster jobs only" in err
    _no_traceback(err)
    assert Store.default().get_job("cccc3333").status == "pending"  # nothing was done
    with pytest.raises(api.UsageError, match="now=True"):
        api.get_job("loc").cancel(now=True)


def test_no_command_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_help_lists_only_real_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "==SUPPRESS==" not in out
    for hidden in ("batch-show", "batch-retry", "batch-cancel"):  # spelled `batch show` ...
        assert hidden not in out
    assert "batch show|retry|cancel NAME" in out
    for command in ("train", "jobs", "logs", "status", "cancel", "batch", "batches", "serve"):
        assert f"\n    {command} " in out or f"\n    {command}\n" in out


def test_batch_show_still_parses_after_hiding(capsys):
    assert main(["batch", "show", "nope"]) == 1
    assert "nope" in capsys.readouterr().err


class _FollowedJob:
    """A submitted job as cmd_train sees it; ``outcome`` says how following it ends."""

    name, id = "sleepy", "abcd1234"

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.events: list[str] = []

    def follow(self, emit):
        emit("[worker 0] tick")
        if self.outcome == "interrupt":
            raise KeyboardInterrupt
        return type("R", (), {"status": self.outcome})()

    def cancel(self):
        self.events.append("cancel")
        return type("R", (), {"status": "cancelled"})()

    def summary(self) -> str:
        return f"job sleepy (abcd1234) {'cancelled' if self.events else self.outcome}"

    def failure_report(self, traceback: bool = True) -> str:
        return "Job sleepy (abcd1234) failed: worker 0 exited with code 1"


@pytest.mark.parametrize(("outcome", "code"), [("interrupt", 130), ("failed", 1), ("succeeded", 0)])
def test_train_follows_and_ctrl_c_cancels(script, capsys, monkeypatch, outcome, code):
    job = _FollowedJob(outcome)
    monkeypatch.setattr(api, "submit_script", lambda *args, **kwargs: job)
    assert main(["train", str(script)]) == code
    captured = capsys.readouterr()
    assert captured.out == "[worker 0] tick\n"
    err = captured.err
    assert err.startswith("cellship: job sleepy (abcd1234) submitted\n")
    if outcome == "interrupt":
        assert job.events == ["cancel"]
        assert err.index("interrupted; cancelling job sleepy (abcd1234)...") < err.index(
            "job sleepy (abcd1234) cancelled")
    else:
        assert job.events == []
        assert f"job sleepy (abcd1234) {outcome}" in err
        assert ("worker 0 exited with code 1" in err) is (outcome == "failed")
