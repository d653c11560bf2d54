"""notebooks/02-serve.ipynb end to end, as `make demo` runs it: from a trained digits job
(here trained by the notebook itself, the store being empty) to a served prediction."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cellship.runs.scraps import scraps_of
from cellship.serve import export as models

pytestmark = [pytest.mark.serving, pytest.mark.kernel]

REPO = Path(__file__).resolve().parents[2]


def serve_processes(home: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = proc.info["cmdline"] or []
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if "serve" in cmdline and "cellship.cli" in cmdline and env.get("CELLSHIP_HOME") == str(home):
            found.append(proc.pid)
    return found


def test_notebook_02_exports_serves_and_predicts(tmp_path: Path, cellship_home: Path) -> None:
    import papermill

    out = tmp_path / "02-serve.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "02-serve.ipynb"), str(out), cwd=str(tmp_path),
                               kernel_name="python3", progress_bar=False)
    executed = nbformat.read(out, as_version=4)
    assert scraps_of(executed)["served_accuracy"] > 0.8
    stored = models.get_model("digits")
    assert stored.version == 1 and stored.manifest["source"]["job_name"] == "digits-cnn"
    text = "\n".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "server stopped (exit code 0)" in text
    assert 'cellship_serving_requests_total{code="200",model="digits",verb="predict"} 1.0' in text
    assert serve_processes(cellship_home) == []
