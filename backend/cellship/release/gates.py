"""Release gates: ``metric:TAG OP NUMBER`` and ``record:NAME OP NUMBER``, checked against
what the release's notebook run recorded.

Where the values come from: the batch run record of the notebook. ``record:NAME`` is a
value the notebook recorded with ``cellship.record(NAME, value)`` (a scrapbook scrap);
``metric:TAG`` is the last TensorBoard scalar ``TAG`` (``run/tag``, e.g.
``validation/epoch_accuracy``) of the ``%%train`` jobs the notebook submitted, which the
batch runner reads from the jobs' event files when the run ends and keeps as
``metric:TAG`` beside the scraps.

Why a regular expression and not ``eval``: the gate is user input, and the language is one
comparison of one named value against one number.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from cellship.errors import GateSyntaxError

SYNTAX = ("a gate is 'metric:TAG OP NUMBER' or 'record:NAME OP NUMBER' with OP one of "
          ">=, >, <=, <, ==, != (e.g. 'metric:validation/epoch_accuracy >= 0.95' or "
          "'record:accuracy > 0.9')")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt}
_GATE = re.compile(r"^\s*(?P<kind>metric|record):(?P<name>[^\s<>=!]+)\s*"
                   r"(?P<op>>=|<=|==|!=|>|<)\s*(?P<threshold>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Gate:
    kind: str  # metric | record
    name: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.name} {self.op} {self.threshold:g}"

    @property
    def key(self) -> str:
        """The key of the value in a batch run's recorded values."""
        return f"metric:{self.name}" if self.kind == "metric" else self.name


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    value: float | None  # None: the run recorded no such value (or not a number)
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate.text, "value": self.value, "threshold": self.gate.threshold,
                "op": self.gate.op, "passed": self.passed, "note": self.note}


def parse(text: str) -> Gate:
    """One gate from its text; a malformed one raises :class:`GateSyntaxError`."""
    match = _GATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise GateSyntaxError(f"The gate {text!r} is not understood: {SYNTAX}.")
    return Gate(match["kind"], match["name"], match["op"], float(match["threshold"]))


def parse_all(texts: Iterable[str]) -> tuple[Gate, ...]:
    return tuple(parse(t) for t in texts)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def evaluate(gates: Sequence[Gate], recorded: Mapping[str, Any]) -> list[GateResult]:
    """Each gate against ``recorded`` (a batch run's recorded values). A value that is
    missing, not a number or NaN fails its gate, with a note that says so."""
    results = []
    for gate in gates:
        raw = recorded.get(gate.key)
        value = _number(raw)
        if gate.key not in recorded:
            have = sorted(k for k in recorded if k.startswith("metric:") == (gate.kind == "metric"))
            results.append(GateResult(gate, None, False, "not recorded; the run recorded "
                                      + (", ".join(have) if have else "none of this kind")))
        elif value is None or math.isnan(value):
            results.append(GateResult(gate, value, False, f"not a number ({raw!r})"))
        else:
            results.append(GateResult(gate, value, _OPS[gate.op](value, gate.threshold)))
    return results


def table(results: Sequence[GateResult]) -> str:
    """The gates as a table: gate, value, threshold, result."""
    rows = [("GATE", "VALUE", "THRESHOLD", "RESULT")]
    for r in results:
        value = "-" if r.value is None else f"{r.value:.6g}"
        verdict = "pass" if r.passed else "FAIL" + (f" ({r.note})" if r.note else "")
        rows.append((f"{r.gate.kind}:{r.gate.name}", value, f"{r.gate.op} {r.gate.threshold:g}",
                     verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
                     + "  " + row[3] for row in rows)
