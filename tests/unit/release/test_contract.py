"""Serving-contract differences between the served signature and a new one."""

from __future__ import annotations

from cellship.release import contract

OLD = {"inputs": [{"name": "image", "dtype": "DT_FLOAT", "shape": [-1, 8, 8, 1]}],
       "outputs": [{"name": "probabilities", "dtype": "DT_FLOAT", "shape": [-1, 10]}]}


def test_the_same_signature_has_no_differences():
    assert contract.differences(OLD, {k: list(v) for k, v in OLD.items()}) == []


def test_every_kind_of_change_is_named():
    new = {"inputs": [{"name": "image", "dtype": "DT_DOUBLE", "shape": [-1, 64]},
                      {"name": "mask", "dtype": "DT_FLOAT", "shape": [-1]}],
           "outputs": [{"name": "logits", "dtype": "DT_FLOAT", "shape": [-1, 10]}]}
    diffs = contract.differences(OLD, new)
    text = contract.describe(diffs)
    assert [str(d) for d in diffs] == [
        "input 'mask' added",
        "input 'image': dtype changed from float to double",
        "input 'image': shape changed from [?,8,8,1] to [?,64]",
        "output 'logits' added",
        "output 'probabilities' removed",
    ]
    assert text.startswith("  - input 'mask' added")


def test_unknown_rank_counts_as_a_shape():
    new = {"inputs": [{"name": "image", "dtype": "DT_FLOAT", "shape": None}],
           "outputs": OLD["outputs"]}
    (diff,) = contract.differences(OLD, new)
    assert str(diff) == "input 'image': shape changed from [?,8,8,1] to unknown rank"
