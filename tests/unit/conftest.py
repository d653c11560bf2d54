"""Fixtures of the fast unit tier: every test gets its own CELLSHIP_HOME, so nothing
touches the user's real job store, and no test starts a job or imports TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest


@pytest.fixture(autouse=True)
def cellship_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cellship-home"
    monkeypatch.setenv("CELLSHIP_HOME", str(home))
    monkeypatch.delenv("CELLSHIP_BACKEND", raising=False)
    return home


@pytest.fixture
def store(tmp_path: Path):
    from cellship.store import Store

    return Store(tmp_path / "db" / "cellship.db")


@pytest.fixture
def run_program(monkeypatch: pytest.MonkeyPatch):
    """Execute a generated Program in a fresh namespace, with the bootstrap replaced by a
    recorder (the real one prepares a replica: TF_CONFIG, markers, shipped values)."""
    import cellship.inside.bootstrap as bootstrap

    calls: list[bool] = []

    def fake_start(namespace: dict, shipped: bool = False) -> None:
        calls.append(shipped)

    monkeypatch.setattr(bootstrap, "start", fake_start)

    def run(program: Any, extra: dict | None = None) -> dict:
        namespace: dict = {"__name__": "__cellship_program__"}
        namespace.update(extra or {})
        exec(compile(program.source, "program.py", "exec"), namespace)
        assert calls, "the program did not call the bootstrap"
        return namespace

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    """A small parameterised notebook (tagged parameters cell, python3 kernel) for batch tests."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("lr = 0.1")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print(lr)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path
