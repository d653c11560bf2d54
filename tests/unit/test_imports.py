"""cellship's process-side modules stay light: the supervisor, the CLI and the Jupyter
server import them, and none of those may pay for TensorFlow (or depend on IPython)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_core_modules_import_neither_tensorflow_nor_ipython():
    code = ("import json, sys\n"
            "import cellship, cellship.cli, cellship.train.api, cellship.train.local.supervisor, cellship.train.program\n"
            "import cellship.inside.job, cellship.store, cellship.train.local.backend, cellship.inside.bootstrap\n"
            "heavy = ('tensorflow', 'tf_keras', 'keras', 'IPython')\n"
            "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_lazy_public_names():
    import cellship

    assert callable(cellship.submit) and callable(cellship.get_job)
    assert cellship.job.is_chief.__module__ == "cellship.inside.job"
    from cellship import models  # notebook 02's import: the exported-models module

    assert callable(models.export_job) and callable(models.list_models)
    try:
        cellship.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("cellship.no_such_name did not raise AttributeError")
