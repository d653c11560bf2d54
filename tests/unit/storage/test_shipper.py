"""The keeper's uploader, against a recording stand-in for the SDK's client (the real
store is tests/integration/test_s3_storage.py's)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from cellship.inside import keeper
from cellship.inside.objects import Shipper, Uploader, Window


class Recorder:
    def __init__(self, fail: int = 0) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.meta: dict[tuple[str, str], dict] = {}
        self.fail = fail

    def upload_fileobj(self, handle, bucket, key, ExtraArgs=None, Config=None):
        if self.fail:
            self.fail -= 1
            raise OSError("connection reset")
        self.objects[(bucket, key)] = handle.read()
        self.meta[(bucket, key)] = (ExtraArgs or {}).get("Metadata", {})

    def put_object(self, Bucket, Key, Body, **kwargs):
        self.objects[(Bucket, Key)] = Body
        self.meta[(Bucket, Key)] = kwargs.get("Metadata", {})


def plan(tmp_path: Path) -> dict:
    return {"job_id": "j1", "all": True, "interval": 5.0,
            "roots": [{"local": str(tmp_path / "out"), "bucket": "b", "prefix": "p", "live": False},
                      {"local": str(tmp_path / "tb"), "bucket": "b", "prefix": "p/tb", "live": True}],
            "manifest": {"bucket": "b", "key": "p/.cellship/jobs/j1.json"}}


def test_a_window_reads_the_file_as_it_was_listed(tmp_path: Path) -> None:
    path = tmp_path / "events"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as handle:
        window = Window(handle, 4)
        path.open("ab").write(b"more")
        assert window.read() == b"0123" and window.seek(0, io.SEEK_END) == 4
        window.seek(1)
        assert window.read(2) == b"12"


def test_changed_files_only_and_their_sha256(tmp_path: Path) -> None:
    (tmp_path / "out" / "m").mkdir(parents=True)
    (tmp_path / "out" / "m" / "saved_model.pb").write_bytes(b"model")
    client = Recorder()
    up = Uploader(client, plan(tmp_path)["roots"])
    assert up.sync() == (1, 5) and up.sync() == (0, 0)
    assert client.objects[("b", "p/m/saved_model.pb")] == b"model"
    import hashlib

    assert client.meta[("b", "p/m/saved_model.pb")] == {"sha256": hashlib.sha256(b"model").hexdigest()}


def test_the_logdir_while_running_everything_and_the_manifest_at_the_end(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.1").write_bytes(b"e1")
    (tmp_path / "out" / "model.keras").write_bytes(b"k")
    now = [0.0]
    client = Recorder()
    out = io.StringIO()
    shipper = Shipper(plan(tmp_path), client=client, clock=lambda: now[0], out=out)
    shipper.tick(None)  # not started: nothing
    assert client.objects == {}
    shipper.tick(True)
    assert set(client.objects) == {("b", "p/tb/events.1")}  # the live root only
    (tmp_path / "tb" / "events.1").write_bytes(b"e1e2")
    now[0] = 2.0
    shipper.tick(True)  # before the interval: no round
    assert client.objects[("b", "p/tb/events.1")] == b"e1"
    now[0] = 6.0
    shipper.tick(True)
    assert client.objects[("b", "p/tb/events.1")] == b"e1e2"
    shipper.tick(False)
    assert shipper.done and ("b", "p/model.keras") in client.objects
    manifest = json.loads(client.objects[("b", "p/.cellship/jobs/j1.json")])
    assert manifest["job_id"] == "j1" and manifest["complete"]
    assert manifest["roots"][0]["files"] == {"model.keras": {"size": 1, "sha256": manifest[
        "roots"][0]["files"]["model.keras"]["sha256"]}}
    assert "uploaded the job's files to object storage" in out.getvalue()


def test_a_failing_store_is_retried_then_said_and_the_keeper_lingers(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_bytes(b"x")
    out = io.StringIO()
    shipper = Shipper(plan(tmp_path), client=Recorder(fail=99), out=out, sleep=lambda _s: None)
    assert shipper.finish() is False and not shipper.done
    assert "uploading the job's files to s3://b/p" in out.getvalue()
    assert "stay in this pod for `cellship fetch`" in out.getvalue()
    again = Shipper(plan(tmp_path), client=Recorder(fail=1), out=io.StringIO(), sleep=lambda _s: None)
    assert again.finish() is True  # one broken attempt, then through


def test_the_keeper_ends_after_a_complete_upload(tmp_path: Path) -> None:
    job = tmp_path / "job"
    folder = Path(keeper.state_dir(str(job)))
    folder.mkdir(parents=True)
    (folder / keeper.STARTED).touch()  # started, and (no lock held) ended
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_bytes(b"x")
    client = Recorder()
    shipper = Shipper(plan(tmp_path), client=client, out=io.StringIO())
    assert keeper.keep(str(job), linger=600, sleep=lambda _s: None, shipper=shipper) == 0
    assert ("b", "p/f") in client.objects and shipper.done
