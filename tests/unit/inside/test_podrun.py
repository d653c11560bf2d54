"""A pod's start, without a cluster: the ConfigMap is laid out as the kubelet would mount
it (``items`` key -> path), and the container's command runs with the container's env,
under a Python that cannot see the installed cellship (``-S``: no site-packages). This is
what "the image need not contain cellship" means."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

from cellship.kube.options import KubernetesOptions
from cellship.train.kubernetes import manifests as m
from cellship.train.program import build_program
from cellship.train.spec import JobSpec


def materialise(pod: dict, config_map: dict, root: Path) -> tuple[list[str], dict[str, str]]:
    """Write the ConfigMap's volumes under ``root``; return the command and env, with
    every /cellship path moved under ``root``."""
    data = dict(config_map["data"])
    data |= {k: base64.b64decode(v) for k, v in config_map.get("binaryData", {}).items()}
    mounts = {v["name"]: v["mountPath"] for v in pod["spec"]["containers"][0]["volumeMounts"]}
    for volume in pod["spec"]["volumes"]:
        if "configMap" not in volume:
            continue
        base = root / mounts[volume["name"]].lstrip("/")
        for item in volume["configMap"]["items"]:
            target = base / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            value = data[item["key"]]
            target.write_bytes(value if isinstance(value, bytes) else value.encode())
    move = lambda text: text.replace(m.MOUNT_ROOT, str(root / m.MOUNT_ROOT.lstrip("/")))  # noqa: E731
    container = pod["spec"]["containers"][0]
    env = {e["name"]: move(e["value"]) for e in container["env"]}
    command = [sys.executable if c == "python3" else move(c) for c in container["command"]]
    return command, env


def test_program_runs_from_the_config_map_without_cellship(tmp_path: Path) -> None:
    identity = m.JobIdentity("ab12cd34", "digits", "ml")
    spec = JobSpec(env={"TF_USE_LEGACY_KERAS": "0"})
    program = build_program("import cellship\nfrom cellship import job\n"
                            "print('chief?', job.is_chief(), 'logdir', job.logdir())\n"
                            "print('from', cellship.__file__)\n")
    cm = m.config_map(identity, program.source)
    cm["metadata"]["uid"] = "uid-1"
    pod = m.pods(identity, spec, KubernetesOptions(image="x"), cm)[0]
    command, env = materialise(pod, cm, tmp_path)
    (tmp_path / "cellship" / "job").mkdir(parents=True)
    out = subprocess.run([command[0], "-S", *command[1:]], env=env, capture_output=True,
                         text=True, timeout=30, cwd=tmp_path / "cellship" / "job")
    assert out.returncode == 0, out.stderr
    assert "chief? True logdir" in out.stdout
    assert str(tmp_path) in out.stdout  # CELLSHIP_LOGDIR came from the pod's env
    # The shim (first on PYTHONPATH) is what the program imports, even where the image
    # happens to have a cellship of its own: the pod runs the submitting version.
    assert f"from {tmp_path}/cellship/shim/cellship/__init__.py" in out.stdout
