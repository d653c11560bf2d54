"""cellship.watch.tensorboard without starting TensorBoard: names, URLs, the command,
the registry's clean-up, and the CLI's argument handling."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cellship.cli.main import build_parser, main
from cellship.errors import MissingDependency, UsageError
from cellship.watch import tensorboard as tb
from cellship.watch.tensorboard import launch
from cellship.watch.tensorboard.server import normalize_logdirs


def _server(port: int = 6123, host: str = "127.0.0.1") -> tb.TensorBoardServer:
    return tb.TensorBoardServer(pid=1, port=port, host=host, logdirs=(("a", "/x"),), started=0.0)


# -- URLs --------------------------------------------------------------------------------
def test_url_is_loopback_and_proxied_url_is_plain_without_env(monkeypatch):
    monkeypatch.delenv("TENSORBOARD_PROXY_URL", raising=False)
    server = _server(6123)
    assert server.url == "http://127.0.0.1:6123/"
    assert server.proxied_url() == "http://127.0.0.1:6123/"


def test_proxied_url_follows_tensorboard_proxy_url_convention(monkeypatch):
    monkeypatch.setenv("TENSORBOARD_PROXY_URL", "/user/alice/proxy/%PORT%/")
    assert _server(6123).proxied_url() == "/user/alice/proxy/6123/"
    monkeypatch.setenv("TENSORBOARD_PROXY_URL", "https://hub.example/p/%PORT%/x?port=%PORT%")
    assert _server(7001).proxied_url() == "https://hub.example/p/7001/x?port=7001"


def test_empty_proxy_url_means_plain_url(monkeypatch):
    monkeypatch.setenv("TENSORBOARD_PROXY_URL", "")
    assert _server(6123).proxied_url() == "http://127.0.0.1:6123/"


@pytest.mark.parametrize("host, url", [("0.0.0.0", "http://127.0.0.1:9/"), ("::", "http://[::1]:9/"),
                                       ("::1", "http://[::1]:9/"), ("box.lan", "http://box.lan:9/")])
def test_url_host_is_connectable(host, url):
    assert _server(9, host).url == url


# -- run names and logdirs ---------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("digits", "digits"), ("my job", "my_job"), ("a:b,c", "a_b_c"), ("x/y\\z", "x_y_z"),
    (".hidden", "hidden"), ("  lr=0.01 ", "lr=0.01"), ("ünï", "ünï"), ("a@b+c-d_e", "a@b+c-d_e"),
])
def test_normalize_run_name(raw, expected):
    assert tb.normalize_run_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", ".", ".."])
def test_unusable_run_name_is_a_usage_error(raw):
    with pytest.raises(UsageError, match="cannot name a TensorBoard run"):
        tb.normalize_run_name(raw)


def test_logdirs_are_normalised_sorted_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs = normalize_logdirs({"z:1": "later/tb", "a,b": tmp_path, "home": "~/tb"})
    assert pairs == (("a_b", str(tmp_path)), ("home", str(Path("~/tb").expanduser())),
                     ("z_1", str(tmp_path / "later" / "tb")))


def test_names_that_clash_after_normalising_are_rejected(tmp_path):
    with pytest.raises(UsageError, match="both be shown as run 'a_b'"):
        normalize_logdirs({"a:b": tmp_path / "1", "a,b": tmp_path / "2"})


def test_logdir_that_is_a_file_is_rejected(tmp_path):
    path = tmp_path / "events.txt"
    path.write_text("")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        normalize_logdirs({"a": path})


def test_remote_logdir_and_no_logdir_are_rejected():
    with pytest.raises(UsageError, match="not a local directory"):
        normalize_logdirs({"a": "gs://bucket/tb"})
    with pytest.raises(UsageError, match="at least one logdir"):
        normalize_logdirs({})


def test_job_logdirs_disambiguates_shared_names_with_the_id_and_dedupes():
    a = SimpleNamespace(id="j1aaaa", name="digits", logdir="/jobs/1/tb")
    b = SimpleNamespace(id="j2bbbb", name="digits", logdir="/jobs/2/tb")
    c = SimpleNamespace(id="j3cccc", name="my run", logdir="/jobs/3/tb")
    assert tb.job_logdirs([a, b, c, a]) == {"digits-j1aaaa": "/jobs/1/tb",
                                            "digits-j2bbbb": "/jobs/2/tb", "my_run": "/jobs/3/tb"}
    assert tb.job_logdirs([a]) == {"digits": "/jobs/1/tb"}


# -- the tensorboard command -------------------------------------------------------------
def test_command_by_default_runs_tensorboard_without_tensorflow(monkeypatch):
    monkeypatch.delenv("CELLSHIP_TENSORBOARD_TF", raising=False)
    command = tb.tensorboard_command()
    assert command == [sys.executable, str(launch.WITHOUT_TF)]
    assert launch.WITHOUT_TF.is_file()
    # how cellship recognises its servers among processes: "tensorboard" on the command line
    assert any("tensorboard" in arg for arg in command)


def test_command_with_tensorflow_prefers_the_console_script_next_to_sys_executable(monkeypatch):
    monkeypatch.setenv("CELLSHIP_TENSORBOARD_TF", "1")
    seen = {}

    def which(name, path=None):
        seen["path"] = path
        return f"{path}/tensorboard"

    monkeypatch.setattr(launch.shutil, "which", which)
    assert tb.tensorboard_command() == [f"{Path(sys.executable).parent}/tensorboard"]
    assert seen["path"] == str(Path(sys.executable).parent)


def test_command_with_tensorflow_falls_back_to_python_m(monkeypatch):
    monkeypatch.setenv("CELLSHIP_TENSORBOARD_TF", "1")
    monkeypatch.setattr(launch.shutil, "which", lambda name, path=None: None)
    assert tb.tensorboard_command() == [sys.executable, "-m", "tensorboard.main"]


def test_missing_tensorboard_names_the_pip_install(monkeypatch, tmp_path, cellship_home):
    monkeypatch.setattr(launch.shutil, "which", lambda name, path=None: None)
    monkeypatch.setattr(launch.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else object())
    with pytest.raises(MissingDependency) as info:
        tb.tensorboard_command()
    assert "pip install tensorboard" in str(info.value)
    assert "cellship[tensorboard]" in str(info.value)
    # start() checks before it touches anything
    with pytest.raises(MissingDependency):
        tb.start({"a": tmp_path})
    assert not (cellship_home / "tensorboard").exists()


def test_start_rejects_a_port_out_of_range(tmp_path):
    with pytest.raises(UsageError, match="between 1 and 65535"):
        tb.start({"a": tmp_path}, port=70000)


# -- the registry ------------------------------------------------------------------------
def _write_registry(home: Path, entries: list[dict]) -> Path:
    root = home / "tensorboard"
    root.mkdir(parents=True, exist_ok=True)
    (root / "servers.json").write_text(json.dumps({"version": 1, "servers": entries}))
    return root


def _entry(pid: int, port: int, state_dir: Path, owner: int | None = None) -> dict:
    return {"pid": pid, "port": port, "host": "127.0.0.1", "logdirs": [["a", "/x"]],
            "started": time.time(), "owner_pid": owner, "dir": str(state_dir),
            "log": str(state_dir / "tensorboard.log")}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_entries_are_cleaned_with_their_state_dir(cellship_home, tmp_path):
    root = cellship_home / "tensorboard"
    state = root / "6006-0123abcd"
    (state / "logdir").mkdir(parents=True)
    target = tmp_path / "job-logdir"
    target.mkdir()
    (target / "events.out").write_text("keep me")
    (state / "logdir" / "a").symlink_to(target)
    _write_registry(cellship_home, [_entry(_dead_pid(), 6006, state)])
    assert tb.running() == []
    assert json.loads((root / "servers.json").read_text())["servers"] == []
    assert not state.exists()
    assert (target / "events.out").read_text() == "keep me"  # the link was not followed


def test_an_unrelated_live_process_in_the_registry_is_dropped_not_killed(cellship_home):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        _write_registry(cellship_home, [_entry(sleeper.pid, 6006, cellship_home / "x")])
        assert tb.running() == []
        assert tb.stop_all() == []
        time.sleep(0.2)
        assert sleeper.poll() is None, "cellship killed a process that is not its TensorBoard"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_state_dir_outside_the_naming_scheme_is_never_removed(cellship_home, tmp_path):
    precious = tmp_path / "tensorboard" / "precious"
    precious.mkdir(parents=True)
    _write_registry(cellship_home, [_entry(_dead_pid(), 6006, precious)])
    assert tb.running() == []
    assert precious.is_dir()


def test_damaged_registry_counts_as_empty(cellship_home):
    root = cellship_home / "tensorboard"
    root.mkdir(parents=True)
    (root / "servers.json").write_text("{not json")
    assert tb.running() == []


# -- the CLI -----------------------------------------------------------------------------
def test_cli_parses_several_jobs_port_and_host():
    args = build_parser().parse_args(["tensorboard", "j1", "j2", "--port", "7007", "--host", "0.0.0.0"])
    assert (args.command, args.jobs, args.port, args.host) == ("tensorboard", ["j1", "j2"], 7007, "0.0.0.0")
    assert build_parser().parse_args(["tensorboard", "j1"]).host == "127.0.0.1"


def test_cli_needs_a_job(capsys):
    with pytest.raises(SystemExit) as info:
        main(["tensorboard"])
    assert info.value.code == 2


def test_cli_unknown_job_is_a_sentence(capsys):
    assert main(["tensorboard", "nosuchjob"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellship: error: No job has the id or name 'nosuchjob'")
    assert "Traceback" not in err


def test_cli_without_tensorboard_says_how_to_install_it(capsys, monkeypatch, cellship_home):
    """A missing TensorBoard is a sentence with the fix (exit 1), never a traceback."""
    from cellship.store import JobRecord, Store

    job_dir = cellship_home / "jobs" / "tb0123ab"
    Store.default().create_job(JobRecord(
        id="tb0123ab", name="digits", status="succeeded", backend="local", spec={},
        job_dir=str(job_dir), output_dir=str(job_dir / "output"),
        logdir=str(job_dir / "tensorboard"), created=time.time()))
    monkeypatch.setattr(launch.shutil, "which", lambda name, path=None: None)
    monkeypatch.setattr(launch.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else object())
    assert main(["tensorboard", "digits"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cellship: error: TensorBoard is not installed")
    assert "pip install tensorboard" in err and "Traceback" not in err
    assert not (cellship_home / "tensorboard").exists()  # nothing was started
