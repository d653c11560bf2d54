"""cellship.plugins: training backends and batch executors found through entry points (a
third party's package declares one), built-ins first; and the one default-backend rule."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from cellship import plugins
from cellship.errors import UsageError
from cellship.runs.executor_base import RunExecutor
from cellship.runs.executors import EXECUTORS, LocalRunExecutor, get_executor
from cellship.store import RunRecord
from cellship.train.backend import Backend
from cellship.train.backends import available, get_backend
from cellship.train.local.backend import LocalBackend


class ThirdPartyBackend(Backend):
    """What another package would register in ``cellship.backends``."""

    name = "elsewhere"

    # never called here: a real backend launches, follows and stops jobs
    def _launch(self, job):  # pragma: no cover
        raise NotImplementedError

    refresh = logs = cancel = _launch


class ThirdPartyExecutor(RunExecutor):
    """What another package would register in ``cellship.executors``."""

    name = "elsewhere"

    def start(self, run: RunRecord) -> None:  # pragma: no cover
        raise NotImplementedError

    def running(self, run: RunRecord) -> bool:  # pragma: no cover
        return False

    def kill(self, run: RunRecord) -> None:  # pragma: no cover
        pass


class NotABackend:
    pass


@pytest.fixture
def installed(monkeypatch):
    """Pretend packages declared these entry points (what importlib.metadata would find)."""
    declared: list[EntryPoint] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [ep for ep in declared if ep.group == group]

    monkeypatch.setattr(plugins, "entry_points", entry_points)

    def install(group: str, name: str, value: str) -> None:
        declared.append(EntryPoint(name, value, group))
    return install


def test_third_party_backend_is_found_through_its_entry_point(installed, store) -> None:
    installed("cellship.backends", "elsewhere", f"{__name__}:ThirdPartyBackend")
    assert available()["elsewhere"] == f"{__name__}:ThirdPartyBackend"
    backend = get_backend("elsewhere", store)
    assert isinstance(backend, ThirdPartyBackend) and backend.store is store
    with pytest.raises(UsageError, match=r"Unknown backend 'nope'; available: elsewhere, "
                                         r"kubernetes, local\."):
        get_backend("nope")


def test_third_party_executor_is_found_through_its_entry_point(installed, store) -> None:
    installed("cellship.executors", "elsewhere", f"{__name__}:ThirdPartyExecutor")
    installed("cellship.backends", "ignored", f"{__name__}:ThirdPartyBackend")  # other group
    assert sorted(EXECUTORS) == ["elsewhere", "kubernetes", "local"]
    executor = get_executor("elsewhere", store)
    assert isinstance(executor, ThirdPartyExecutor) and executor.store is store
    with pytest.raises(UsageError, match=r"Batch runs cannot use the backend 'ignored' yet; "
                                         r"available: elsewhere, kubernetes, local\."):
        get_executor("ignored", store)


def test_builtins_win_over_an_entry_point_of_the_same_name(installed, store) -> None:
    # e.g. a stale install whose metadata still names modules that have moved
    installed("cellship.backends", "local", "cellship.backends.local:LocalBackend")
    installed("cellship.executors", "local", "gone.module:Executor")
    assert isinstance(get_backend("local", store), LocalBackend)
    assert EXECUTORS["local"] is LocalRunExecutor


def test_kubernetes_executor_is_imported_only_when_asked_for() -> None:
    from cellship.runs.kubernetes.executor import KubernetesRunExecutor

    assert EXECUTORS.specs()["kubernetes"].endswith(":KubernetesRunExecutor")
    assert EXECUTORS["kubernetes"] is KubernetesRunExecutor
    with pytest.raises(KeyError):
        EXECUTORS["nope"]


def test_a_broken_plugin_is_a_sentence_that_keeps_its_cause(installed) -> None:
    installed("cellship.backends", "missing", "no_such_package.backend:Thing")
    installed("cellship.backends", "wrong", f"{__name__}:NotABackend")
    with pytest.raises(UsageError, match=r"'missing' plugin \(no_such_package.backend:Thing, "
                                         r"entry point group cellship.backends\) cannot be "
                                         r"loaded") as info:
        get_backend("missing")
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(UsageError, match=r"is not a subclass of cellship.train.backend.Backend"):
        get_backend("wrong")


@pytest.mark.parametrize(("given", "env", "expected"), [
    (None, None, "local"),
    (None, "", "local"),  # set but empty reads as unset
    (None, "kubernetes", "kubernetes"),
    ("local", "kubernetes", "local"),  # a flag beats the environment
])
def test_default_backend(monkeypatch, given, env, expected) -> None:
    if env is not None:
        monkeypatch.setenv("CELLSHIP_BACKEND", env)
    assert plugins.default_backend(given) == expected
