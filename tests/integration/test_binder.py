"""The Binder demo, built the way repo2docker builds it (tests/integration/binder_env.py:
a fresh venv, ``pip install -r binder/requirements.txt``, then ``binder/postBuild`` from the
repository's root), and the notebook Binder opens (``labpath=`` in binder/README.md)
executed there through a kernel of that venv, with the job view's front end installed.

The venv is cached under ~/.cache/cellship keyed by its inputs; postBuild runs every time
(see binder_env's docstring). Cold (first time on a machine, or after a change to binder/
or pyproject's dependencies) this builds TensorFlow's environment: minutes, not seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from tests.integration.binder_env import BINDER, REPO, BinderEnv, base_python, binder_env, runtime_version

pytestmark = [pytest.mark.kernel, pytest.mark.tf, pytest.mark.timeout(1800)]

FRONT_ENDS = ("cellship", "anywidget", "@jupyter-widgets/jupyterlab-manager")


@pytest.fixture(scope="module")
def binder() -> BinderEnv:
    python = base_python(runtime_version())
    if python is None:
        pytest.skip(f"no python{runtime_version()} here (binder/runtime.txt)")
    return binder_env(python)


def _jupyter_dirs(tmp: Path) -> dict[str, str]:
    """Empty per-user Jupyter/IPython dirs: only what the venv itself holds counts."""
    dirs = {"JUPYTER_DATA_DIR": tmp / "data", "JUPYTER_CONFIG_DIR": tmp / "config", "IPYTHONDIR": tmp / "ipython"}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return {name: str(path) for name, path in dirs.items()}


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_binder_notebook_path_exists() -> None:
    """The URL binder/README.md gives lands on a notebook that is in the repository."""
    (labpath,) = re.findall(r"labpath=([\w./-]+\.ipynb)", (BINDER / "README.md").read_text())
    assert (REPO / labpath).is_file(), labpath


def test_postbuild_installs_this_checkout(binder: BinderEnv) -> None:
    # where each package resolves and which versions are installed (TensorFlow itself is
    # imported by the notebook's run below; not importing it here saves ~10 s)
    probe = ("import json, importlib.metadata as m, importlib.util as u;"
             "names = ('cellship', 'cellship_magics', 'tensorflow', 'anywidget', 'ipywidgets');"
             "missing = [n for n in names if u.find_spec(n) is None];"
             "assert not missing, f'not installed: {missing}';"
             "print(json.dumps([u.find_spec(n).origin for n in names]"
             " + [m.version('tensorflow-cpu'), m.version('tf-keras')]))")
    result = subprocess.run([str(binder.python), "-c", probe], env=binder.env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    *files, tf_version, keras_version = json.loads(result.stdout.splitlines()[-1])
    cellship_file, magics_file, *installed = map(Path, files)
    # editable, and of THIS checkout (not of the clone the cached venv was built from)
    assert cellship_file.is_relative_to(REPO / "backend") and magics_file.is_relative_to(REPO / "kernel_magics")
    assert all(path.is_relative_to(binder.root) for path in installed), installed
    assert tf_version == keras_version  # tf-keras must match TensorFlow's version


def test_widget_front_ends_are_installed(binder: BinderEnv, tmp_path: Path) -> None:
    result = subprocess.run([str(binder.root / "bin" / "jupyter"), "labextension", "list"],
                            env=binder.env(**_jupyter_dirs(tmp_path)), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    listing = _plain(result.stdout + result.stderr)
    # the section of the venv's own labextensions dir, up to the next dir heading
    section = listing.split(f"{binder.root}/share/jupyter/labextensions", 1)
    assert len(section) == 2, listing
    venv_part = re.split(r"\n\S", section[1], maxsplit=1)[0]
    for name in FRONT_ENDS:
        assert re.search(rf"^\s+{re.escape(name)} v[\w.]+ enabled OK", venv_part, re.M), (name, listing)
    # cellship's is this checkout's build, copied in by postBuild's pip install -e .
    built = json.loads((REPO / "backend/cellship/labextension/package.json").read_text())
    installed = json.loads((binder.root / "share/jupyter/labextensions/cellship/package.json").read_text())
    assert installed["jupyterlab"]["_build"] == built["jupyterlab"]["_build"]


def test_notebook_binder_opens_runs_with_the_job_view(binder: BinderEnv, tmp_path: Path) -> None:
    """notebooks/01 as it is (no parameters), by papermill of the venv through the venv's
    python3 kernel; the saved notebook keeps the job view's widget state and its PNG."""
    env = binder.env(**_jupyter_dirs(tmp_path))
    # the command papermill's kernel manager starts for python3: the venv's python
    spec = subprocess.run([str(binder.python), "-c",
                           "import json; from jupyter_client.manager import KernelManager as M;"
                           "print(json.dumps(M(kernel_name='python3').format_kernel_cmd()))"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert spec.returncode == 0, spec.stderr
    assert Path(json.loads(spec.stdout.splitlines()[-1])[0]).parent == binder.root / "bin", spec.stdout
    output = tmp_path / "out.ipynb"
    run = subprocess.run([str(binder.python), "-m", "papermill", str(REPO / "notebooks/01-distributed-training.ipynb"),
                          str(output), "--cwd", str(tmp_path), "-k", "python3", "--no-progress-bar",
                          "--log-output"], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    nb = nbformat.read(output, as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert re.search(r"job digits-cnn \(\w+\) succeeded", text)
    match = re.search(r"held-out accuracy ([\d.]+)", text)
    assert match and float(match.group(1)) > 0.8
    # the job view: the widget's reference and the final curves' PNG in one bundle...
    train_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%train"))
    (view,) = [o["data"] for o in train_cell.outputs if "image/png" in o.get("data", {})]
    assert "epoch_loss" in view["text/plain"]
    model_id = view["application/vnd.jupyter.widget-view+json"]["model_id"]
    # ...and the widget's state, saved by papermill's nbclient, drawing the finished job
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    model = state[model_id]
    assert model["state"]["state"]["job"]["status"] == "succeeded"
    assert {"train/epoch_loss", "validation/epoch_loss"} <= set(model["state"]["state"]["curves"])
    # a model the installed front end renders: anywidget's, its version the labextension's
    assert model["model_module"] == "anywidget"
    front = json.loads((binder.root / "share/jupyter/labextensions/anywidget/package.json").read_text())
    wanted = re.fullmatch(r"[~^]?(\d+\.\d+)\.[\d*]+", model["model_module_version"])
    assert wanted and front["version"].startswith(wanted.group(1) + "."), (wanted, front["version"])
    assert "export default" in model["state"]["_esm"]  # the view's ES module, inline: no CDN
