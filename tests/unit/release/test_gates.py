"""Gate expressions: what parses, what is refused (with the accepted syntax), and how
each is checked against a batch run's recorded values."""

from __future__ import annotations

import math

import pytest

from cellship.errors import GateSyntaxError
from cellship.release import gates


@pytest.mark.parametrize("text, kind, name, op, threshold", [
    ("metric:validation/epoch_accuracy >= 0.95", "metric", "validation/epoch_accuracy", ">=", 0.95),
    ("record:accuracy>0.9", "record", "accuracy", ">", 0.9),
    ("  record:loss <= 1e-3 ", "record", "loss", "<=", 0.001),
    ("metric:train/epoch_loss < .5", "metric", "train/epoch_loss", "<", 0.5),
    ("record:n == 3", "record", "n", "==", 3.0),
    ("record:n != -2", "record", "n", "!=", -2.0),
])
def test_gates_parse(text, kind, name, op, threshold):
    gate = gates.parse(text)
    assert (gate.kind, gate.name, gate.op, gate.threshold) == (kind, name, op, threshold)


@pytest.mark.parametrize("text", ["accuracy >= 0.9", "metric:acc => 0.9", "record:acc >= high",
                                  "record:acc >= 0.9 and record:loss < 1", "metric: >= 1",
                                  "__import__('os').system('x') > 1", ""])
def test_a_broken_gate_is_one_sentence_saying_the_accepted_syntax(text):
    with pytest.raises(GateSyntaxError) as caught:
        gates.parse(text)
    message = str(caught.value)
    assert "'metric:TAG OP NUMBER' or 'record:NAME OP NUMBER'" in message
    assert ">=, >, <=, <, ==, !=" in message and "\n" not in message


def test_gates_are_checked_against_scraps_and_job_metrics():
    recorded = {"accuracy": 0.97, "metric:validation/epoch_accuracy": 0.91, "note": "text",
                "nan": math.nan, "flag": True}
    results = gates.evaluate(gates.parse_all([
        "record:accuracy >= 0.95", "metric:validation/epoch_accuracy >= 0.95",
        "record:note > 1", "record:nan > 0", "record:flag > 0", "metric:missing/tag > 0"]),
        recorded)
    assert [r.passed for r in results] == [True, False, False, False, False, False]
    assert results[0].value == 0.97 and results[1].value == 0.91
    assert "not a number" in results[2].note and "not a number" in results[3].note
    assert "not recorded" in results[5].note and "metric:validation/epoch_accuracy" in results[5].note
    table = gates.table(results)
    assert table.splitlines()[0].split()[:3] == ["GATE", "VALUE", "THRESHOLD"]
    assert "metric:validation/epoch_accuracy  0.91" in table and ">= 0.95" in table
    assert table.count("FAIL") == 5
