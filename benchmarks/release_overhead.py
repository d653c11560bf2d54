"""Goal of ``cellship release --to local`` (issue 14): its wall time at most 1.1x that of the
same steps run by hand as separate commands.

Both sides start from the same notebook (it copies a trained SavedModel and records its
accuracy, as the release integration test's does) and end with the new version stored as
the newest of the model's repository, answering the example request, and compared with
the version before it:

  release   ``cellship release NB --model digits -p ... --gate 'record:accuracy >= 0.5'
            --example request.json --canary-window W`` (one process: batch run, gate,
            contract, stage, canary server with the smoke test and the comparison, promote);
  by hand   ``cellship batch NB -p ...`` (the gate read off its table), ``cellship export
            OUT --name digits --example request.json`` (stored straight into the repository:
            by hand there is no staging, the export *is* the promotion), then ``cellship
            serve digits --port 0`` and a predict request (stdlib HTTP, as ``curl`` would)
            to the new version and to the previous one, and the server stopped.

The canary window (``--canary-window``, default 0 here) is a fixed watch the user asks
for; by hand it is the same ``sleep`` plus a load loop, so it is left out of both sides
unless given. The runs alternate (release, by hand, release, ...) so the shared machine's
load falls on both; medians of ``--runs`` each.

    .venv/bin/python benchmarks/release_overhead.py [--runs 3] [--canary-window 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import isolated_home, machine, median

from tests.integration.test_batch import make_notebook

BIN = Path(sys.executable).parent
BODY = """
import shutil, cellship
shutil.copytree(source, out, copy_function=shutil.copy)
cellship.record("accuracy", accuracy)
"""
PARAMETERS = "source = ''\nout = 'model'\naccuracy = 0.0"
TRAIN = """
import json, sys
import tf_keras
from sklearn.datasets import load_digits
images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
tf_keras.utils.set_random_seed(0)
model = tf_keras.Sequential([tf_keras.Input((8, 8, 1), name="image"), tf_keras.layers.Flatten(),
                             tf_keras.layers.Dense(10, activation="softmax", name="probs")])
model.compile(tf_keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(images, labels, epochs=3, batch_size=64, verbose=0)
model.save(sys.argv[1], save_format="tf")
json.dump({"accuracy": float(history.history["accuracy"][-1]),
           "example": {"instances": images[:4].tolist()}}, open(sys.argv[2], "w"))
"""


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def _post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def by_hand(notebook: Path, params: list[str], out: Path, request: Path, model: str) -> float:
    start = time.perf_counter()
    table = _run([str(BIN / "cellship"), "batch", str(notebook), *params])
    assert "succeeded" in table, table
    stored = json.loads(_run([str(BIN / "cellship"), "export", str(out), "--name", model,
                              "--example", str(request), "--json"]))
    version = int(stored["version"])
    server = subprocess.Popen([str(BIN / "cellship"), "serve", model, "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        body = request.read_bytes()
        base = f"{url}/v1/models/{model}"
        while True:  # until the new version answers (the server loads versions after it binds)
            try:
                new = _post(f"{base}/versions/{version}:predict", body)
                break
            except OSError:
                time.sleep(0.05)
        if version > 1:
            old = _post(f"{base}/versions/{version - 1}:predict", body)
            assert len(old["predictions"]) == len(new["predictions"])
    finally:
        server.terminate()
        server.wait(timeout=60)
    return time.perf_counter() - start


def released(notebook: Path, params: list[str], request: Path, model: str, window: float) -> float:
    start = time.perf_counter()
    _run([str(BIN / "cellship"), "release", str(notebook), "--model", model, *params,
          "--gate", "record:accuracy >= 0.5", "--example", str(request),
          "--canary-window", f"{window:g}"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--canary-window", type=float, default=0.0)
    args = parser.parse_args()
    home = isolated_home()
    work = Path(tempfile.mkdtemp(prefix="cellship-bench-release-"))
    try:
        trained, facts = work / "trained", work / "facts.json"
        subprocess.run([sys.executable, "-c", TRAIN, str(trained), str(facts)], check=True,
                       capture_output=True)
        info = json.loads(facts.read_text())
        request = work / "request.json"
        request.write_text(json.dumps(info["example"]))
        notebook = make_notebook(work / "release.ipynb", BODY, parameters=PARAMETERS)

        def params(out: Path) -> list[str]:
            return ["-p", "source", str(trained), "-p", "out", str(out),
                    "-p", "accuracy", str(info["accuracy"])]

        # version 1 of each model first: from then on both sides compare with a version before
        released(notebook, params(work / "r0"), request, "digits-r", args.canary_window)
        by_hand(notebook, params(work / "h0"), work / "h0", request, "digits-h")
        release_s: list[float] = []
        hand_s: list[float] = []
        for i in range(1, args.runs + 1):
            release_s.append(released(notebook, params(work / f"r{i}"), request, "digits-r",
                                      args.canary_window))
            hand_s.append(by_hand(notebook, params(work / f"h{i}"), work / f"h{i}", request,
                                  "digits-h"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    r, h = median(release_s), median(hand_s)
    result = {"benchmark": "release_overhead", "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "canary_window_s": args.canary_window, "runs": args.runs,
              "release_s": [round(x, 2) for x in release_s], "by_hand_s": [round(x, 2) for x in hand_s],
              "release_median_s": round(r, 2), "by_hand_median_s": round(h, 2),
              "ratio": round(r / h, 3), "goal": {"ratio": 1.1}}
    result["meets_goal"] = result["ratio"] <= 1.1
    print(json.dumps(result))


if __name__ == "__main__":
    main()
