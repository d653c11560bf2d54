"""The single-user notebook server image of the cluster tier, made the way Zero to
JupyterHub's images are: the pods' image (python3, TensorFlow, cellship; tests/cluster/image.py)
plus JupyterLab and jupyter-server-proxy, with cellship's server extension and the proxy
enabled by a config file in ``/etc/jupyter`` (where pip puts it for a normal install).

Built with cellship's own append builder onto the pods' image in the node's registry, so the
node pulls it like any image: two layers, the dependency layer (pip, cached on this machine
by its requirements, see :mod:`cellship.images.pydeps`) and the config file.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata
from pathlib import Path

from cellship.images import pydeps
from cellship.images.builder import append
from cellship.images.layers import Entry, parents, write_layer
from tests.cluster.image import BASE_PYTHON

PORT = 8888
PROXY_VERSION = "4.6.0"  # jupyter-server-proxy (not installed in this venv: pinned here)
CONFIG = "etc/jupyter/jupyter_server_config.d/cellship-notebook.json"
ENABLED = {"ServerApp": {"jpserver_extensions": {"cellship.jupyter": True,
                                                 "jupyter_server_proxy": True}}}


def requirements() -> tuple[str, ...]:
    """What ``pip install 'cellship[kubernetes,lab]' jupyter-server-proxy`` installs on top of
    TensorFlow: cellship's own requirements (the magics' widgets, the panel's server, the
    kubernetes client), JupyterLab, the proxy; each pinned to this venv's version."""
    names = ["jupyterlab", "kubernetes", f"jupyter-server-proxy=={PROXY_VERSION}"]
    for req in metadata.requires("cellship") or []:
        if ";" not in req or "sys_platform" in req:
            names.append(re.split(r"[\s<>=!~\[;(]", req.strip(), maxsplit=1)[0])
    return pydeps.pinned(names)


def notebook_image(base: str, registry: str, workdir: Path) -> str:
    """Push the notebook image built on ``base`` to ``registry``; its pinned reference."""
    deps = pydeps.deps_layer(requirements(), BASE_PYTHON)
    entries = [*parents(CONFIG), Entry(CONFIG, data=json.dumps(ENABLED).encode())]
    config_layer = write_layer(entries, workdir / "notebook-config.tar.gz",
                               created_by=f"cellship test: {CONFIG} enables cellship.jupyter "
                                          "and jupyter_server_proxy")
    key = hashlib.sha256(json.dumps([base, deps.digest, config_layer.digest,
                                     metadata.version("cellship")]).encode()).hexdigest()[:12]
    tag = f"{registry}/cellship-test/notebook:{key}"

    def configure(config: dict) -> None:
        run = config["config"]
        run["Cmd"] = ["python3", "-m", "jupyterlab", "--ip=0.0.0.0", f"--port={PORT}",
                      "--ServerApp.open_browser=False"]
        run["ExposedPorts"] = {f"{PORT}/tcp": {}}

    digest = append(base, tag, [deps, config_layer], configure)
    return f"{tag.rsplit(':', 1)[0]}@{digest}"
