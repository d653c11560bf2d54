"""IPython extension of cellship: ``%load_ext cellship`` (or ``cellship_magics``).

A thin layer: every magic parses its line, calls the public :mod:`cellship` API, and
prints. No job logic lives here.
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    from cellship_magics.magics import CellshipMagics

    ipython.register_magics(CellshipMagics)
    from cellship_magics.view import widgets_wanted

    if widgets_wanted(ipython):  # a Job shown as a cell's value is its live view
        from cellship.train.api import Job
        from cellship_magics.view import job_bundle

        ipython.display_formatter.mimebundle_formatter.for_type(Job, job_bundle)


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo: magics stay registered until the kernel restarts."""
