"""The serving contract: a new version must take and give what the serving one does.

A signature as the model repository's manifest keeps it (``cellship.serve.check``):
``{"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}``, shapes with ``-1`` for an
unknown dimension and ``None`` for an unknown rank. Clients break when an input is added
or removed, or a dtype or shape changes; the same holds for outputs they read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Difference:
    side: str  # input | output
    name: str
    change: str  # added | removed | dtype | shape
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        if self.change in ("added", "removed"):
            return f"{self.side} {self.name!r} {self.change}"
        return f"{self.side} {self.name!r}: {self.change} changed from {_show(self.old)} to {_show(self.new)}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value.removeprefix("DT_").lower()
    if value is None:
        return "unknown rank"
    return "[" + ",".join("?" if d == -1 else str(d) for d in value) + "]"


def _by_name(specs: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {s["name"]: s for s in specs}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Difference]:
    """What changed from the ``old`` signature to the ``new`` one (empty: compatible)."""
    found: list[Difference] = []
    for side, key in (("input", "inputs"), ("output", "outputs")):
        before, after = _by_name(old.get(key, [])), _by_name(new.get(key, []))
        for name in sorted(set(after) - set(before)):
            found.append(Difference(side, name, "added"))
        for name in sorted(set(before) - set(after)):
            found.append(Difference(side, name, "removed"))
        for name in sorted(set(before) & set(after)):
            a, b = before[name], after[name]
            if a.get("dtype") != b.get("dtype"):
                found.append(Difference(side, name, "dtype", a.get("dtype"), b.get("dtype")))
            if _shape(a.get("shape")) != _shape(b.get("shape")):
                found.append(Difference(side, name, "shape", a.get("shape"), b.get("shape")))
    return found


def _shape(shape: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if shape is None else tuple(shape)


def describe(diffs: Sequence[Difference]) -> str:
    return "\n".join(f"  - {d}" for d in diffs)
