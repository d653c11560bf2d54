"""Checks on the notebook of a batch, before any kernel starts: it reads as a notebook,
its kernel exists, and the parameters given match its ``parameters`` cell."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import nbformat

from cellship.errors import UsageError


@dataclass(frozen=True)
class NotebookInfo:
    path: Path
    kernel: str
    declared: tuple[str, ...]  # names in the `parameters` cell
    has_parameters_cell: bool


def inspect(path: str | Path, kernel: str | None = None, check_kernel: bool = True) -> NotebookInfo:
    """Read and check the notebook; ``check_kernel=False`` where the kernel runs elsewhere
    (a container image), so need not be installed here."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"No notebook at {path}.")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:
        raise UsageError(f"{path} is not a readable Jupyter notebook: {type(err).__name__}: "
                         f"{err}".strip()) from None
    name = kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    if check_kernel:
        _check_kernel(name, path)
    has_cell = any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    declared: tuple[str, ...] = ()
    if has_cell:
        from papermill.inspection import inspect_notebook

        declared = tuple(inspect_notebook(str(path)).keys())
    return NotebookInfo(path=path.resolve(), kernel=name, declared=declared,
                        has_parameters_cell=has_cell)


def _check_kernel(name: str, path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
    except NoSuchKernel:
        available = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        raise UsageError(f"{path} asks for the kernel {name!r}, which is not installed here "
                         f"(available: {available}). Pass --kernel NAME, or install it "
                         "(e.g. python -m ipykernel install --user --name NAME).") from None


def parameter_warnings(info: NotebookInfo, parameters: Mapping[str, Any]) -> list[str]:
    """What a user should hear about the parameters before the runs start."""
    notes = []
    if not info.has_parameters_cell:
        notes.append(f"{info.path.name} has no cell tagged `parameters`: the parameters are "
                     "injected at the top of the notebook.")
        return notes
    unknown = sorted(set(parameters) - set(info.declared))
    if unknown:
        known = ", ".join(info.declared) or "none"
        notes.append(f"{', '.join(unknown)} not in the parameters cell of {info.path.name} "
                     f"(it declares: {known}); they are injected anyway.")
    return notes
