"""Goals: rebuilding an image after a model change with ``cellship build`` takes at most 0.25x
the time of ``buildah bud`` + ``buildah push`` with the equivalent Dockerfile; an unchanged
rebuild uploads 0 bytes.

    .venv/bin/python benchmarks/image_build.py [--runs 5] [--model-mb 50] [--bases busybox,python]

Both tools start from the same base image in the same local registry (Debian's
docker-registry on 127.0.0.1) and push there. The model is a ~50 MB SavedModel-shaped
directory whose variables are float32 normals (weights compress about as badly as real
ones). Before every timed build the model changes (new weights), so neither tool can
reuse its previous model layer. buildah runs as the notes describe (vfs storage,
``--isolation chroot``, private storage and config) with the base already in its storage;
the Dockerfile is ``FROM <base>`` / ``COPY model /models/<name>/1`` / ``ENV MODEL_NAME``.
``cellship build`` is timed as a CLI process, start-up included. Bases: ``busybox`` (2 MB)
and ``python`` (Debian bookworm + python3, ~170 MB, the debootstrapped test base: built
once, cached).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _common import isolated_home, machine, median  # noqa: E402

GOAL_RATIO = 0.25


def write_model(path: Path, megabytes: float, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    (path / "variables").mkdir(parents=True, exist_ok=True)
    (path / "saved_model.pb").write_bytes(b"saved model graph %d\n" % seed + b"\0" * 200_000)
    weights = rng.standard_normal(int(megabytes * 1e6 / 4), dtype=np.float32)
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(weights.tobytes())
    (path / "variables" / "variables.index").write_bytes(b"index %d\n" % seed)


def run(cmd: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def buildah_env(base: Path) -> tuple[dict, list[str]]:
    from tests.integration.images_support import PODMAN_CONF, short_runroot

    base.mkdir(parents=True, exist_ok=True)
    (base / "containers.conf").write_text(PODMAN_CONF)
    (base / "registries.conf").write_text("unqualified-search-registries = []\n")
    run = short_runroot(base)
    (base / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{base / "root"}"\n'
                                       f'runroot = "{run}"\n')
    env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"),
               CONTAINERS_REGISTRIES_CONF=str(base / "registries.conf"),
               CONTAINERS_STORAGE_CONF=str(base / "storage.conf"))
    flags = ["--storage-driver", "vfs", "--root", str(base / "root"), "--runroot", str(run)]
    return env, flags


def bench_base(label: str, layout: Path, registry: str, work: Path, runs: int,
               model_mb: float) -> dict:
    from tests.integration import images_support as sup

    base = f"{registry}/base/{label}:1"
    sup.skopeo_push(layout, base, fmt="v2s2")
    context = work / f"ctx-{label}"
    model = context / "model"
    write_model(model, model_mb, seed=0)
    (context / "Dockerfile").write_text(
        f"FROM {base}\nCOPY model /models/digits/1\nENV MODEL_NAME=digits\n")
    env, flags = buildah_env(work / f"buildah-{label}")
    cellship = [sys.executable, "-m", "cellship.cli", "build", str(model), "--base", base,
                "--kind", "tf-serving", "--name", "digits", "-q"]
    b_tag = f"{registry}/bench/buildah-{label}:latest"
    c_tag = f"{registry}/bench/cellship-{label}:latest"
    bud = ["buildah", *flags, "bud", "--isolation", "chroot", "--tls-verify=false",
           "--pull=false", "-t", b_tag, "-f", str(context / "Dockerfile"), str(context)]
    push = ["buildah", *flags, "push", "--tls-verify=false", b_tag, f"docker://{b_tag}"]
    run(["buildah", *flags, "pull", "--tls-verify=false", base], env)
    # warm-up: both tools have pushed once before the timed rebuilds
    run(bud, env), run(push, env), run(cellship + ["--tag", c_tag])
    times: dict[str, list[float]] = {"cellship": [], "buildah": []}
    for i in range(runs):
        write_model(model, model_mb, seed=2 * i + 1)
        times["buildah"].append(run(bud, env) + run(push, env))
        write_model(model, model_mb, seed=2 * i + 2)
        times["cellship"].append(run(cellship + ["--tag", c_tag]))
    done = subprocess.run(cellship + ["--tag", c_tag, "--json"], capture_output=True, text=True)
    unchanged = json.loads(done.stdout)
    subprocess.run(["buildah", *flags, "rm", "--all"], env=env, capture_output=True)
    shutil.rmtree(flags[-1], ignore_errors=True)  # the run root lives outside ``work``
    c, b = median(times["cellship"]), median(times["buildah"])
    return {"base": label, "cellship_s": round(c, 2), "buildah_s": round(b, 2),
            "ratio": round(c / b, 3),
            "meets_goal": c / b <= GOAL_RATIO and unchanged["uploaded_bytes"] == 0,
            "cellship_runs": [round(t, 2) for t in times["cellship"]],
            "buildah_runs": [round(t, 2) for t in times["buildah"]],
            "unchanged_rebuild_uploaded_bytes": unchanged["uploaded_bytes"],
            "unchanged_rebuild_s": unchanged["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model-mb", type=float, default=50)
    parser.add_argument("--bases", default="busybox,python")
    args = parser.parse_args()
    home = isolated_home()
    from tests.integration import images_support as sup

    work = Path(tempfile.mkdtemp(prefix="cellship-bench-images-"))
    registry = sup.start_registry(work / "registry")
    results = []
    try:
        layouts = {"busybox": lambda: sup.busybox_layout(work / "busybox"),
                   "python": sup.python_layout}
        for label in args.bases.split(","):
            results.append(bench_base(label, layouts[label](), registry.host, work, args.runs,
                                      args.model_mb))
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    buildah = subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.strip()
    result = {"benchmark": "image_build", "machine": machine(), "buildah": buildah,
              "model_mb": args.model_mb, "runs": args.runs, "results": results,
              "goals": {"ratio_max": GOAL_RATIO, "unchanged_rebuild_uploaded_bytes": 0}}
    result["meets_goal"] = all(r["meets_goal"] for r in results)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
