"""Named plugins, and the one place the default backend is chosen.

Training backends and batch executors are found the same way, papermill's engine habit:
cellship's built-ins plus an entry point group, so a third party adds one by declaring an
entry point in its own package, without touching cellship::

    [project.entry-points."cellship.backends"]    # a cellship.train.backend.Backend
    mine = "my_package.training:MyBackend"
    [project.entry-points."cellship.executors"]   # a cellship.runs.executor_base.RunExecutor
    mine = "my_package.batches:MyExecutor"

Built-ins win over an entry point of the same name: an installed package cannot silently
replace ``local`` (and a stale install's metadata pointing at moved modules is ignored).

Imports nothing of cellship's features, so every package may use it.
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, Iterator, Mapping, TypeVar, cast

from cellship.errors import UsageError

BACKEND_ENV = "CELLSHIP_BACKEND"
DEFAULT_BACKEND = "local"

T = TypeVar("T")


def default_backend(name: str | None = None) -> str:
    """The backend to use: ``name`` when given, else ``$CELLSHIP_BACKEND``, else local.

    How ``%%train``, ``cellship train``, ``cellship.submit()``, ``%batch``,
    ``cellship batch`` and ``cellship.batch()`` all choose, so they never disagree."""
    return name or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND


class Plugins(Mapping[str, type[T]], Generic[T]):
    """name -> class for one kind of plugin. Reading an entry (``plugins["local"]``)
    imports the class, so listing names never imports a backend's heavy dependencies.

    ``unknown`` is the sentence for a name that is not there; it is formatted with
    ``name`` (repr'ed) and ``available`` (the names, sorted and comma-separated).
    ``base`` is the class every plugin must derive from (typed ``type``, not ``type[T]``:
    the bases are abstract, which mypy refuses there)."""

    def __init__(self, group: str, builtins: Mapping[str, str], base: type,
                 unknown: str) -> None:
        self.group = group
        self.builtins = dict(builtins)
        self.base = base
        self.unknown = unknown

    def specs(self) -> dict[str, str]:
        """name -> "module:Class" of every plugin, built-ins first."""
        found = dict(self.builtins)
        for ep in entry_points(group=self.group):
            found.setdefault(ep.name, ep.value)
        return found

    def load(self, name: str) -> type[T]:
        """The class registered as ``name``; a UsageError naming the available ones when
        there is none."""
        if name in self.builtins:  # no metadata scan (jobs() resolves one per job listed)
            # ours: a failure to import is a bug of cellship's, shown with its traceback
            return cast("type[T]", EntryPoint(name, self.builtins[name], self.group).load())
        specs = self.specs()
        if name not in specs:
            raise UsageError(self.unknown.format(name=repr(name),
                                                 available=", ".join(sorted(specs))))
        value = specs[name]
        entry = EntryPoint(name, value, self.group)
        try:
            loaded = entry.load()
        except (ImportError, AttributeError) as err:
            raise UsageError(f"The {name!r} plugin ({value}, entry point group {self.group}) "
                             f"cannot be loaded: {err}. Reinstall the package that provides "
                             "it, or choose another.") from err
        if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
            raise UsageError(f"The {name!r} plugin ({value}, entry point group {self.group}) "
                             f"is not a subclass of {self.base.__module__}."
                             f"{self.base.__qualname__}; its package must fix the entry point.")
        return cast("type[T]", loaded)  # checked just above; mypy cannot tie base to T

    # -- Mapping: ``name in plugins``, ``sorted(plugins)``, ``plugins[name]`` ---------------
    def __getitem__(self, name: str) -> type[T]:
        if name not in self.specs():
            raise KeyError(name)
        return self.load(name)

    def __contains__(self, name: object) -> bool:
        return name in self.specs()

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs())

    def __len__(self) -> int:
        return len(self.specs())

    def __repr__(self) -> str:
        return f"<cellship.plugins.Plugins {self.group}: {', '.join(sorted(self.specs()))}>"
