"""Training launch, side by side in one run: `%%train --workers 2` vs Ray Train's
TensorflowTrainer (num_workers=2) vs a hand launch of two processes with TF_CONFIG, all on
the same MultiWorkerMirroredStrategy program.

    bash benchmarks/peers/setup.sh ray                 # once: Ray's own venv
    .venv/bin/python benchmarks/peers/training.py [--runs 3] [--steps 300]

Two numbers per launch:
- submit -> first step: from just before the launch (the magic's cell starting in an
  in-process IPython shell; the hand launch's first Popen; the Ray driver's Popen) to the
  wall-clock time the chief worker starts its first training batch;
- steps/s: the chief's training steps per second after a warm-up of 20 steps, the same
  model and data, which is where cellship must cost nothing (it adds no per-step work).
The launches alternate run by run so that load from elsewhere on a shared machine hits
all three alike. The program writes its own numbers to a JSON file (Ray's log forwarding
batches and dedups worker output, so stdout is not used for them). Prints a markdown table
and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import _peers  # noqa: E402
from _common import isolated_home, machine  # noqa: E402

# benchmarks/_common.py's TRAIN_PROGRAM with more steps, a hidden layer, and a callback that
# times them. RESULT_PATH is filled in per run.
PROGRAM = '''
import json
import os
import time
import tensorflow as tf
from sklearn.datasets import load_digits

STEPS, WARMUP = {steps}, 20
strategy = tf.distribute.MultiWorkerMirroredStrategy()
images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
dataset = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(64)


class Timing(tf.keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first = time.time()
        if batch == WARMUP:
            self.warm = time.perf_counter()

    def on_train_end(self, logs=None):
        rate = (STEPS - WARMUP) / (time.perf_counter() - self.warm)
        task = json.loads(os.environ.get("TF_CONFIG", "{{}}")).get("task", {{}})
        if task.get("index", 0) == 0:
            with open({result!r}, "w") as out:
                json.dump({{"first_step": self.first, "steps_per_s": rate}}, out)


with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(128, activation="relu"),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
model.fit(dataset, epochs=1, steps_per_epoch=STEPS, verbose=0, callbacks=[Timing()])
'''

ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1", "CUDA_VISIBLE_DEVICES": ""}


def program(steps: int, result: Path) -> str:
    return PROGRAM.format(steps=steps, result=str(result))


def _read(result: Path, start: float, what: str, output: str = "") -> dict:
    if not result.exists():
        raise RuntimeError(f"{what}: the program wrote no result\n{output[-3000:]}")
    data = json.loads(result.read_text())
    result.unlink()
    return {"first_step_s": data["first_step"] - start, "steps_per_s": data["steps_per_s"]}


def hand_launch(workdir: Path, steps: int) -> dict:
    """Two processes with TF_CONFIG, as benchmarks/submission_overhead.py's hand launch."""
    result = workdir / "hand.json"
    path = workdir / "hand.py"
    path.write_text(program(steps, result))
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]}
    for s in socks:
        s.close()
    start = time.time()
    procs = [subprocess.Popen([sys.executable, "-u", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=dict(os.environ, **ENV, TF_CONFIG=json.dumps(
                                  {"cluster": cluster, "task": {"type": "worker", "index": i}})))
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("hand launch failed:\n" + outputs[0][-3000:])
    return _read(result, start, "hand launch", outputs[0])


def magic_launch(shell, workdir: Path, steps: int) -> dict:
    result = workdir / "magic.json"
    start = time.time()
    shell.run_cell("%%train --workers 2\n" + program(steps, result), store_history=True)
    import cellship

    job = cellship.last_job()
    if job is None or job.status != "succeeded":
        raise RuntimeError(f"%%train job did not succeed: {job}")
    return _read(result, start, "%%train", Path(job.record.replicas[0].log_path).read_text())


def ray_launch(workdir: Path, steps: int) -> dict:
    """Ray's driver (benchmarks/peers/ray_train.py) in Ray's venv: ray.init + TensorflowTrainer."""
    result = workdir / "ray.json"
    path = workdir / "ray_program.py"
    path.write_text(program(steps, result))
    # Ray's socket paths live under RAY_TMPDIR and must fit AF_UNIX's 107 bytes: keep it short.
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    env = dict(os.environ, **ENV, RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0")
    env.pop("CELLSHIP_HOME", None)
    start = time.time()
    proc = subprocess.run([_peers.python("ray"), str(HERE / "ray_train.py"), str(path)], capture_output=True,
                          text=True, env=env, timeout=900)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    if proc.returncode:
        raise RuntimeError("Ray Train launch failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    marks = {line.split()[0]: float(line.split()[1]) for line in proc.stdout.splitlines()
             if line.split()[:1] and line.split()[0] in ("RAY_INIT_DONE", "FIT_CALLED")}
    out = _read(result, start, "Ray Train", proc.stdout + proc.stderr)
    out["ray_init_s"] = marks["RAY_INIT_DONE"] - start
    out["fit_to_first_step_s"] = out["first_step_s"] + start - marks["FIT_CALLED"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each launch, alternating (default 3)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out (its venv is missing)")
    args = parser.parse_args()
    home = isolated_home()
    workdir = Path(tempfile.mkdtemp(prefix="cellship-peers-train-"))
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "cellship")
    launches = {"hand launch (TF_CONFIG)": lambda: hand_launch(workdir, args.steps),
                "%%train --workers 2": lambda: magic_launch(shell, workdir, args.steps)}
    ray_error = None
    if not args.no_ray:
        try:
            _peers.venv("ray")
            launches["Ray Train TensorflowTrainer"] = lambda: ray_launch(workdir, args.steps)
        except _peers.PeerMissing as exc:
            ray_error = str(exc)
    runs: dict[str, list[dict]] = {name: [] for name in launches}
    errors: dict[str, str] = {}
    load_averages = [("start", [round(v, 2) for v in os.getloadavg()])]
    try:
        hand_launch(workdir, 30)  # warm the page cache for every launch alike
        for run in range(args.runs):
            for name, launch in launches.items():
                if name in errors:
                    continue
                try:
                    runs[name].append(launch())
                except Exception as exc:
                    errors[name] = f"{type(exc).__name__}: {exc}"[:3000]
                    print(f"# {name} failed: {errors[name]}", file=sys.stderr, flush=True)
                    continue
                print(f"# run {run + 1} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
            load_averages.append((f"after run {run + 1}", [round(v, 2) for v in os.getloadavg()]))
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    if ray_error:
        errors["Ray Train TensorflowTrainer"] = ray_error
    summary = {}
    for name, values in runs.items():
        if values:
            summary[name] = {key: round(statistics.median(v[key] for v in values), 3) for key in values[0]}
            summary[name]["runs"] = len(values)
    print("| launch | submit -> first step, median s | steps/s, median | runs |")
    print("| --- | --- | --- | --- |")
    for name, s in summary.items():
        extra = (f" (ray.init {s['ray_init_s']:.2f} s; fit() -> first step {s['fit_to_first_step_s']:.2f} s)"
                 if "ray_init_s" in s else "")
        print(f"| {name} | {s['first_step_s']:.2f}{extra} | {s['steps_per_s']:.1f} | {s['runs']} |")
    print()
    print("load averages (1, 5, 15 min): " + "; ".join(f"{w}: {v}" for w, v in load_averages))
    for name, error in errors.items():
        print(f"could not run: {name}: {error}")
    versions = {"tensorflow": _tf_version()}
    try:
        versions["ray"] = _peers.versions("ray", ("ray",)).get("ray", "?")
    except _peers.PeerMissing:
        pass
    print(json.dumps({"benchmark": "peers/training", "machine": machine(), "steps": args.steps,
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": versions,
                      "summary": summary, "runs": runs, "errors": errors, "load_averages": load_averages}))


def _tf_version() -> str:
    from importlib.metadata import version

    return version("tensorflow-cpu")


if __name__ == "__main__":
    main()
