"""Batch parameters: parsing as papermill does, grids, files, and notebook checks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cellship.errors import UsageError
from cellship.runs.notebook import inspect, parameter_warnings
from cellship.runs.params import expand, load_file, pairs_to_dict, parse_grid, parse_value


@pytest.mark.parametrize("text, value", [("0.1", 0.1), ("3", 3), ("true", True), ("null", None),
                                         ("adam", "adam"), ("[1, 2]", [1, 2]), ("'0.1'", "0.1"),
                                         ("", "")])
def test_values_parse_like_papermill(text, value):
    assert parse_value("x", text) == value


def test_unparseable_value_names_the_parameter():
    with pytest.raises(UsageError, match=r"parameter 'lr' does not parse: '\[0.1'"):
        parse_value("lr", "[0.1")


def test_grid_and_cartesian_product_order():
    grid = parse_grid(["lr=0.1,0.01", "opt=adam,sgd"])
    assert grid == {"lr": [0.1, 0.01], "opt": ["adam", "sgd"]}
    runs = expand({"epochs": 3}, grid)
    assert runs == [{"epochs": 3, "lr": 0.1, "opt": "adam"}, {"epochs": 3, "lr": 0.1, "opt": "sgd"},
                    {"epochs": 3, "lr": 0.01, "opt": "adam"}, {"epochs": 3, "lr": 0.01, "opt": "sgd"}]
    assert expand({"a": 1}, {}) == [{"a": 1}]


@pytest.mark.parametrize("spec", ["lr", "lr=", "=1,2", "1x=1", "a b=1"])
def test_bad_grid_specs(spec):
    with pytest.raises(UsageError, match="NAME=V1,V2"):
        parse_grid([spec])


def test_grid_name_twice():
    with pytest.raises(UsageError, match="twice"):
        parse_grid(["lr=1", "lr=2"])


def test_pairs_and_bad_names():
    assert pairs_to_dict([["lr", "0.5"], ["name", "run a"]]) == {"lr": 0.5, "name": "run a"}
    with pytest.raises(UsageError, match="not a Python identifier"):
        expand({"bad-name": 1}, {})


def test_parameters_file(tmp_path: Path):
    good = tmp_path / "p.yaml"
    good.write_text("lr: 0.01\nlayers: [32, 16]\n")
    assert load_file(good) == {"lr": 0.01, "layers": [32, 16]}
    listing = tmp_path / "l.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="mapping"):
        load_file(listing)
    with pytest.raises(UsageError, match="Cannot read"):
        load_file(tmp_path / "missing.yaml")
    broken = tmp_path / "b.yaml"
    broken.write_text("a: [1\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_file(broken)


def _notebook(path: Path, with_parameters: bool, kernel: str = "python3") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("lr = 0.1\nepochs = 2")
    if with_parameters:
        cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print(lr)")]
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(nb, path)
    return path


def test_notebook_checks_and_warnings(tmp_path: Path):
    info = inspect(_notebook(tmp_path / "a.ipynb", True))
    assert info.declared == ("lr", "epochs") and info.kernel == "python3"
    assert parameter_warnings(info, {"lr": 1}) == []
    (note,) = parameter_warnings(info, {"lr": 1, "batch": 2})
    assert "batch not in the parameters cell" in note and "lr, epochs" in note
    bare = inspect(_notebook(tmp_path / "b.ipynb", False))
    (note,) = parameter_warnings(bare, {"lr": 1})
    assert "no cell tagged `parameters`" in note


def test_missing_kernel_and_bad_json(tmp_path: Path):
    with pytest.raises(UsageError, match="kernel 'no-such-kernel'.*--kernel"):
        inspect(_notebook(tmp_path / "k.ipynb", True, kernel="no-such-kernel"))
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not a readable Jupyter notebook"):
        inspect(bad)
    with pytest.raises(UsageError, match="No notebook"):
        inspect(tmp_path / "none.ipynb")
