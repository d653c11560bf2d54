"""Parameters of a batch: ``-p NAME VALUE``, ``-f params.yaml`` and ``--grid NAME=V1,V2``,
parsed the way papermill's command line parses them (YAML scalars), expanded into the
cartesian product, and checked against the notebook before anything runs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from cellship.errors import UsageError


def parse_value(name: str, text: str) -> Any:
    """``"0.1"`` -> 0.1, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2], ``"adam"`` -> "adam"."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        problem = str(getattr(err, "problem", "") or err).strip()
        raise UsageError(f"The value of parameter {name!r} does not parse: {text!r} ({problem}). "
                         "Quote it to pass a string, e.g. -p name \"'[0.1'\".") from None


def parse_grid(specs: Sequence[str] | None) -> dict[str, list[Any]]:
    """``["lr=0.1,0.01", "opt=adam,sgd"]`` -> {"lr": [0.1, 0.01], "opt": ["adam", "sgd"]}."""
    grid: dict[str, list[Any]] = {}
    for spec in specs or []:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values.strip():
            raise UsageError(f"--grid {spec!r} must look like NAME=V1,V2,... "
                             "(e.g. --grid lr=0.1,0.01).")
        if name in grid:
            raise UsageError(f"--grid names {name!r} twice; give all its values at once.")
        grid[name] = [parse_value(name, v.strip()) for v in values.split(",")]
    return grid


def load_file(path: str | Path) -> dict[str, Any]:
    """``-f params.yaml``: a mapping of parameter names to values."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise UsageError(f"Cannot read parameters file {path}: {err.strerror}.") from None
    except yaml.YAMLError as err:
        raise UsageError(f"Parameters file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UsageError(f"Parameters file {path} must be a mapping of names to values, "
                         "e.g. `lr: 0.01`.")
    return data


def check_names(names: Iterable[str]) -> None:
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise UsageError(f"Parameter name {name!r} is not a Python identifier.")


def expand(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """One parameter dict per run: ``base`` overlaid with each point of the grid's cartesian
    product (in the order the grid was given; the last name varies fastest)."""
    check_names(list(base) + list(grid))
    if not grid:
        return [dict(base)]
    names = list(grid)
    return [dict(base) | dict(zip(names, combo))
            for combo in itertools.product(*(grid[n] for n in names))]


def pairs_to_dict(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``[["lr", "0.1"], ["epochs", "3"]]`` (from ``-p NAME VALUE``) -> typed dict."""
    return {name: parse_value(name, value) for name, value in pairs or []}
