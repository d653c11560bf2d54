"""IPython extension of cellship: ``%load_ext cellship`` (or ``cellship_magics``).

A thin layer: every magic parses its line, calls the public :mod:`cellship` API, and
prints. No job logic lives here.
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    from cellship_magics.magics import CellshipMagics

    ipython.register_magics(CellshipMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo: magics stay registered until the kernel restarts."""
