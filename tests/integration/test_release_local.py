"""``cellship release --to local`` end to end, one model through its whole life: v1 released
(gate passes); refused before anything is served: a release whose gate fails, a notebook that
fails (its output notebook kept), a model with another signature; v2 promoted after smoke
and canary; a v3 whose model answers differently (rolled back by itself); the history; and
``cellship rollback --to 1``; while a load loop through the serving server of the
repository sees zero failed requests. Then a CLI release killed (SIGKILL) in its canary
window: ``releases`` shows it interrupted, ``release --resume`` finishes it, nothing
changed what was served, and the next release is promoted.

Time: one tiny model is trained once (real TensorFlow on sklearn's digits) and the release
notebook only copies a SavedModel and records values, so it runs in a kernel without
TensorFlow; TensorFlow is loaded once, in this process, for the export checks and the
canary servers, the way the CLI loads it once per release.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellship.cli.main import main
from cellship.serve import export as models
from cellship.serve.server import BackgroundServer, ServingConfig
from cellship.store import Store
from tests.integration.test_batch import make_notebook

pytestmark = [pytest.mark.serving, pytest.mark.kernel, pytest.mark.tf]

# The release notebook: copy the SavedModel it is given (fresh file times, so the release
# finds it as written by this run), record its accuracy; `fail` makes it raise.
BODY = """
import shutil, cellship
if fail:
    raise RuntimeError("the data went missing")
shutil.copytree(source, out, copy_function=shutil.copy)
cellship.record("accuracy", accuracy)
"""
PARAMETERS = "source = ''\nout = 'model'\naccuracy = 0.0\nfail = False"


def _train(tmp: Path) -> tuple[Path, Path, float, dict[str, Any]]:
    """A trained digits model, an untrained one with the same signature (it answers
    differently), the trained one's accuracy, and an example request."""
    import tf_keras
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)

    def build(seed: int) -> Any:
        tf_keras.utils.set_random_seed(seed)
        model = tf_keras.Sequential([tf_keras.Input((8, 8, 1), name="image"),
                                     tf_keras.layers.Flatten(),
                                     tf_keras.layers.Dense(10, activation="softmax", name="probs")])
        model.compile(tf_keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    good = build(0)
    history = good.fit(images, labels, epochs=3, batch_size=64, verbose=0)
    good.save(str(tmp / "good"), save_format="tf")
    build(7).save(str(tmp / "wrong"), save_format="tf")
    flat = tf_keras.Sequential([tf_keras.Input((64,), name="pixels"), tf_keras.layers.Dense(10)])
    flat.save(str(tmp / "flat"), save_format="tf")  # another signature: breaks the contract
    example = {"instances": images[:4].tolist()}
    return tmp / "good", tmp / "wrong", float(history.history["accuracy"][-1]), example


class LoadLoop:
    """Unversioned predict requests, one after another, until stopped; every answer that
    is not a 200 with predictions is a failure."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.url, self.body = url, json.dumps(body).encode()
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(self.url, data=self.body, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert "predictions" in json.loads(response.read())
                    self.ok += 1
            except (OSError, AssertionError, ValueError) as err:
                self.failures.append(repr(err))
            time.sleep(0.05)  # ~20 requests a second at most: the machine runs the releases too

    def __enter__(self) -> "LoadLoop":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _served(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        states = json.loads(response.read())["model_version_status"]
    return max(int(s["version"]) for s in states if s["state"] == "AVAILABLE")


def test_release_promote_gate_canary_rollback(tmp_path: Path, cellship_home: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good, wrong, accuracy, example = _train(tmp_path)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(example))
    work = tmp_path / "work"
    work.mkdir()
    notebook = make_notebook(work / "release.ipynb", BODY, parameters=PARAMETERS)
    store = Store.default()

    def release(out: str, *extra: str, source: Path = good, acc: float = accuracy) -> int:
        return main(["release", str(notebook), "--model", "digits", "-p", "source", str(source),
                     "-p", "out", out, "-p", "accuracy", str(acc),
                     "--gate", "record:accuracy >= 0.5", "--example", str(request),
                     "--canary-window", "0.5", "--max-difference", "0.001", *extra])

    # v1: the gate passes, nothing served yet: promoted after the smoke test
    assert release("m1") == 0
    assert capsys.readouterr().out.strip() == "1"
    base = models.root() / "digits"
    assert sorted(models.version_dirs(base)) == [1]

    # a v2 whose gate fails: a table, nothing added
    assert release("m2x", acc=0.25) == 1
    err = capsys.readouterr().err
    assert "1 of 1 gate not met; nothing was added" in err
    assert "record:accuracy  0.25   >= 0.5" in err
    assert sorted(models.version_dirs(base)) == [1]

    # a notebook that fails: its output notebook kept and named, nothing added
    assert main(["release", str(notebook), "--model", "digits", "-p", "fail", "True"]) == 1
    err = capsys.readouterr().err
    failed = store.list_releases("digits")[-1]
    assert (failed.outcome, failed.failed_step) == ("failed", "run")
    assert failed.output_notebook and Path(failed.output_notebook).is_file()
    assert failed.output_notebook in err and "the data went missing" in err
    assert sorted(models.version_dirs(base)) == [1]

    # a model whose signature differs from the served one: refused with the differences
    assert release("m2f", source=tmp_path / "flat") == 1
    err = capsys.readouterr().err
    assert "input 'pixels' added" in err and "input 'image' removed" in err
    assert "--allow-signature-change" in err
    assert sorted(models.version_dirs(base)) == [1]

    # The serving server runs on a thread of this process (TensorFlow is loaded here
    # already): the same ModelServer `cellship serve` runs, up in a second instead of the
    # ~15 s a second interpreter takes to import TensorFlow on a busy CI machine.
    with BackgroundServer({"digits": base}, ServingConfig(port=0, poll_interval_s=0.2),
                          log=lambda _text: None) as server:
        server.wait_ready()
        status = f"{server.url}/v1/models/digits"
        with LoadLoop(status + ":predict", example) as load:
            # v2: the same model retrained: smoke passes, answers equal, promoted and served
            assert release("m2", "--server", server.url) == 0
            captured = capsys.readouterr()
            assert captured.out.strip() == "2" and _served(status) == 2
            assert "largest difference from version 1: 0" in captured.err

            # v3 whose model answers differently: staged, canaried, rolled back by itself
            assert release("m3b", "--server", server.url, source=wrong) == 1
            err = capsys.readouterr().err
            assert "Rolled back: the canary's difference check failed" in err
            assert "version 2 is still served" in err and "Traceback" not in err
            assert sorted(models.version_dirs(base)) == [1, 2] and _served(status) == 2
            aside = [p for p in (base / ".rejected").iterdir() if p.name.startswith("3-")]
            assert len(aside) == 1 and (aside[0] / "saved_model.pb").is_file()
            assert not list(base.glob(".canary-*"))

            # back to version 1 in one step, while the load goes on
            assert main(["rollback", "digits", "--to", "1", "--server", server.url]) == 0
            assert capsys.readouterr().out.strip() == "1" and _served(status) == 1
            time.sleep(0.5)
        assert load.failures == [] and load.ok > 20, (load.ok, load.failures[:5])

    assert main(["releases", "digits"]) == 0
    out = capsys.readouterr().out
    rows = out.split("\n\n")[0].splitlines()[1:]
    assert [row.split()[1:4] for row in rows] == [
        ["1", "promoted", "-"], ["-", "failed", "gates"], ["-", "failed", "run"],
        ["-", "failed", "contract"], ["2", "promoted", "-"], ["3", "rolled-back", "canary"],
        ["2->1", "rollback", "-"]]
    assert "check difference failed" in out
    records = store.list_releases("digits")
    assert records[4].previous == 1 and records[4].details["canary"]["difference"] == 0.0
    assert records[0].gates[0]["value"] == pytest.approx(accuracy)
    assert all(r.user for r in records) and records[0].parameters["out"] == "m1"
    # nothing was deleted: the rolled-back and the rolled-away versions are kept
    assert sorted(p.name.split("-")[0] for p in (base / ".rejected").iterdir()) == ["2", "3"]
    assert np.isfinite(accuracy)

    # Killed mid-canary (issue 14): a CLI release in its canary window gets SIGKILL; the
    # history shows it interrupted at that step, `--resume` finishes it (the staged version
    # moved aside, its canary folder gone), the served version never changed, and the
    # next release works.
    with BackgroundServer({"digits": base}, ServingConfig(port=0, poll_interval_s=0.2),
                          log=lambda _text: None) as server:
        server.wait_ready()
        status = f"{server.url}/v1/models/digits"
        with LoadLoop(status + ":predict", example) as load:
            killed = _kill_in_canary(notebook, good, accuracy, request, store)
            assert _served(status) == 1
            assert main(["releases", "digits"]) == 0
            out = capsys.readouterr().out
            row = next(r for r in out.splitlines() if r.startswith(killed))
            assert row.split()[1:4] == ["2", "interrupted", "canary"]
            assert "`cellship release --resume digits`" in out
            assert list(base.glob(f".canary-{killed}"))  # what the killed process left

            assert main(["release", "--resume", "digits"]) == 0
            assert capsys.readouterr().out.split() == [killed, "rolled-back"]
            assert not list(base.glob(".canary-*")) and sorted(models.version_dirs(base)) == [1]
            assert (base / ".rejected" / f"2-{killed}" / "saved_model.pb").is_file()
            assert _served(status) == 1

            assert release("m5", "--server", server.url) == 0
            assert capsys.readouterr().out.strip() == "2" and _served(status) == 2
        assert load.failures == [] and load.ok > 10, (load.ok, load.failures[:5])
    last = store.list_releases("digits")[-2:]
    assert [(r.id == killed, r.outcome, r.failed_step) for r in last] == [
        (True, "rolled-back", "canary"), (False, "promoted", None)]
    assert not list(base.glob(".canary-*"))


def _kill_in_canary(notebook: Path, source: Path, accuracy: float, request: Path,
                    store: Store) -> str:
    """Start `cellship release` as its own process with a long canary window, SIGKILL it once
    its record says it is at step canary; the release's id."""
    before = {r.id for r in store.list_releases("digits")}
    cli = Path(sys.executable).with_name("cellship")
    log = notebook.parent / "killed-release.err"  # a file, not a pipe nobody reads while it runs
    with log.open("wb") as err:
        child = subprocess.Popen(
            [str(cli), "release", str(notebook), "--model", "digits", "-p", "source", str(source),
             "-p", "out", "m4", "-p", "accuracy", str(accuracy), "--example", str(request),
             "--canary-window", "300"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and child.poll() is None:
            mine = [r for r in store.list_releases("digits") if r.id not in before]
            if mine and mine[0].failed_step == "canary" and mine[0].outcome == "running":
                time.sleep(1.0)  # into its canary: its server loading or the example flowing
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the release never reached its canary: "
                                 f"{log.read_text(errors='replace')[-2000:]}")
        assert child.poll() is None
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    (record,) = [r for r in store.list_releases("digits") if r.id not in before]
    assert record.outcome == "running" and record.version == 2  # as the dead process left it
    return record.id
