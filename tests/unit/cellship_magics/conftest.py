"""The IPython shell the magics' unit tests drive, with cellship loaded (one per module)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    ipython = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "cellship")
    return ipython
