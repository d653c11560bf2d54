"""JobSpec: what to run and on which topology, validated once at the edge.

Everything downstream (program building, TF_CONFIG, backends) trusts a JobSpec.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from cellship.errors import UsageError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Variables a user may not override with --env: the backend owns them.
RESERVED_ENV = frozenset({"TF_CONFIG", "CELLSHIP_JOB_ID", "CELLSHIP_JOB_DIR",
                          "CELLSHIP_TASK_TYPE", "CELLSHIP_TASK_INDEX"})


@dataclass(frozen=True)
class Replica:
    """One process of a job: its TensorFlow task type and index."""

    type: str
    index: int

    @property
    def label(self) -> str:
        return self.type if self.type == "chief" else f"{self.type} {self.index}"

    @property
    def key(self) -> str:
        """File-name-safe identity: ``worker-1``, ``chief-0``, ``ps-0``."""
        return f"{self.type}-{self.index}"


@dataclass(frozen=True)
class JobSpec:
    workers: int = 1
    ps: int = 0
    gpus: int = 0
    name: str | None = None
    backend: str = "local"
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    startup_timeout: float = 300.0
    max_restarts: int = 0
    ship: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"--workers must be a whole number >= 1, got {self.workers!r}.")
        if not isinstance(self.ps, int) or self.ps < 0:
            raise UsageError(f"--ps must be a whole number >= 0, got {self.ps!r}.")
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise UsageError(f"--gpus must be a whole number >= 0 (GPUs per worker), got {self.gpus!r}.")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise UsageError(f"--max-restarts must be a whole number >= 0, got {self.max_restarts!r}.")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout!r}.")
        if self.startup_timeout <= 0:
            raise UsageError(f"--startup-timeout must be positive, got {self.startup_timeout!r}.")
        if self.name is not None and not _NAME_RE.match(self.name):
            raise UsageError(
                f"--name {self.name!r} is not a valid job name: use 1-63 letters, digits, "
                "'-', '_' or '.', starting with a letter or digit (e.g. digits-cnn).")
        for key in self.env:
            if not _ENV_KEY_RE.match(key):
                raise UsageError(f"--env {key!r} is not a valid environment variable name.")
            if key in RESERVED_ENV:
                raise UsageError(f"--env {key} is set by cellship for every replica and cannot "
                                 "be overridden.")
        for name in self.ship:
            if not name.isidentifier():
                raise UsageError(f"--ship {name!r} is not a Python variable name.")

    @property
    def strategy(self) -> str:
        """The TensorFlow distribution the topology is laid out for."""
        if self.ps:
            return "parameter_server"
        return "multi_worker_mirrored" if self.workers > 1 else "single"

    def replicas(self) -> list[Replica]:
        """Every process of the job, in a stable order (chief, workers, ps)."""
        if self.ps:
            return ([Replica("chief", 0)] + [Replica("worker", i) for i in range(self.workers)]
                    + [Replica("ps", i) for i in range(self.ps)])
        return [Replica("worker", i) for i in range(self.workers)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = dict(self.env)
        data["ship"] = list(self.ship)
        data["strategy"] = self.strategy
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobSpec":
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["ship"] = tuple(kwargs.get("ship", ()))
        kwargs["env"] = dict(kwargs.get("env", {}))
        return cls(**kwargs)


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {pair!r} must look like NAME=VALUE, e.g. --env BATCH=64.")
        env[key] = value
    return env


def parse_ship(values: list[str] | None) -> tuple[str, ...]:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``."""
    names: list[str] = []
    for value in values or []:
        names.extend(n.strip() for n in value.split(",") if n.strip())
    return tuple(dict.fromkeys(names))
