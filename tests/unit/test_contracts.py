"""The house plan's import rules (pyproject.toml's [tool.importlinter]) are enforced: the
real tree keeps them, and a deliberate violation in a copy of it is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(),
                                reason="import-linter missing: pip install -e '.[test]'")


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "labextension", "*.pyc")
    shutil.copytree(REPO / "backend", dest / "backend", ignore=ignore)
    shutil.copytree(REPO / "kernel_magics", dest / "kernel_magics", ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "backend"),
                                                       str(root / "kernel_magics")]))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_tree_keeps_the_import_contracts(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    out = _lint(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("train/probe_violation.py", "import IPython\n", "Process code never imports IPython"),
    ("inside/probe_violation.py", "import pandas\n", "What runs inside pods"),
    ("serve/probe_violation.py", "from cellship.cli import main\n",
     "Nothing imports the command line"),
    ("images/probe_violation.py", "import kubernetes\n", "Image building needs no cluster"),
])
def test_a_violation_breaks_its_contract(tmp_path: Path, module: str, line: str,
                                         contract: str) -> None:
    _copy_tree(tmp_path)
    (tmp_path / "backend" / "cellship" / module).write_text(line)
    out = _lint(tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    broken = out.stdout[out.stdout.index("Broken contracts"):]
    assert contract in broken and "probe_violation" in broken
